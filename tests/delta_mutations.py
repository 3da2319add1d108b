"""Random edits of a fleet's intent and override files, for the differential tests of delta
compiles (tests/test_delta_fuzz.py, bench/delta_fuzz.py).

An edit is one structural change to one policy file, made on the parsed YAML (ruamel's round
trip) and written back: a value replaced by one the fleet uses elsewhere under the same key
(or a new one), a key or list item dropped, a list item repeated, two items swapped, a key
another document has at the same place grafted in, another file's document added to the
file, or the file emptied; or an earlier edit taken back (always, after an edit that broke
the compile). With `ROUTE_OPS`, routes are also added to intents (a new object file on
every cluster the intent is compiled for). Edits are drawn from a seeded RNG, so a failing
sequence is reproduced by its seed. Many edits change something other gateways may see (a
namespace, a CA bundle, a listener name, a port), some break the document; all must compile
exactly as from scratch.
"""

from __future__ import annotations

import copy
import io
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from tests.record_support import mtlsc
from tests.test_delta import ENV, delta_of, from_scratch, overlays, shown

Place = tuple[Any, Any]  # (container, key or index)
OPS = ("set", "set", "set", "drop", "dup", "swap", "graft", "adopt", "empty", "revert")
ROUTE_OPS = (*OPS, "route", "route")


def _yaml() -> YAML:
    yaml = YAML()  # round trip: an edit changes only what it changes
    yaml.width = 4096
    return yaml


def _signature(path: tuple[Any, ...]) -> tuple[str, ...]:
    return tuple("*" if isinstance(p, int) else str(p) for p in path)


def _walk(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, Any, Any,
                                                                   tuple[Any, ...]]]:
    """(container, key, value, path of value) for every value below `node`."""
    items = node.items() if isinstance(node, dict) else \
        enumerate(node) if isinstance(node, list) else ()
    for key, value in list(items):
        yield node, key, value, (*path, key)
        yield from _walk(value, (*path, key))


def _name(path: tuple[Any, ...]) -> str:
    """The key a value is under (a list item: its list's key)."""
    for part in reversed(path):
        if not isinstance(part, int):
            return str(part)
    return ""


@dataclass
class Pools:
    """What the fleet's documents hold: scalars by key, mappings by place."""

    scalars: dict[str, list[Any]] = field(default_factory=dict)
    mappings: dict[tuple[str, ...], list[dict[str, Any]]] = field(default_factory=dict)

    def add(self, doc: Any) -> None:
        for _, _, value, path in _walk(doc):
            if isinstance(value, dict):
                self.mappings.setdefault(_signature(path), []).append(value)
            elif not isinstance(value, list):
                pool = self.scalars.setdefault(_name(path), [])
                if value not in pool:
                    pool.append(value)


def policy_files(root: Path) -> list[Path]:
    """The files edits are made to: every intent and override file, in a fixed order."""
    top = root / "policies"
    return sorted([*top.glob("gateways/**/*.yaml"), *top.glob("overrides/*.yaml")])


def pools_of(root: Path) -> Pools:
    pools = Pools()
    for path in policy_files(root):
        for doc in _yaml().load_all(path.read_text(encoding="utf-8")):
            pools.add(doc)
    return pools


def _novel(rng: random.Random, value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return rng.choice([value + 1, 80, 443, 8443, 9443, 0, 65536])
    if isinstance(value, str):
        return rng.choice([f"{value}-x{rng.randrange(3)}", f"x{rng.randrange(3)}.{value}",
                           value.upper(), ""])
    return value


@dataclass
class Edit:
    """One edit: the file and what was done (for the failure message)."""

    path: Path
    what: str

    def __str__(self) -> str:
        return f"{'/'.join(self.path.parts[-2:])}: {self.what}"


class Editor:
    """Draws edits for one fleet from one seed."""

    def __init__(self, root: Path, seed: int, ops: tuple[str, ...] = OPS) -> None:
        self.rng = random.Random(seed)
        self.ops = ops
        self.pools = pools_of(root)
        self.files = policy_files(root)
        self.originals = {p: p.read_text(encoding="utf-8") for p in self.files}

    def edit(self) -> Edit:
        """A random edit of a random file (sometimes taking an earlier one back)."""
        rng = self.rng
        overrides = [p for p in self.files if p.parent.name == "overrides"]
        path = rng.choice(overrides if overrides and rng.random() < 0.3 else self.files)
        before = path.read_text(encoding="utf-8")
        if rng.choice(self.ops) == "revert":
            return self._revert(path, before)
        for _ in range(5):  # an operation that finds nothing to do: draw another
            edit = self._change(path, before)
            if edit.what != "nothing":
                break
        return edit

    def fix(self, path: Path) -> Edit:
        """What a user does after an edit that broke the compile: take it back."""
        return self._revert(path, path.read_text(encoding="utf-8"))

    def _revert(self, path: Path, before: str) -> Edit:
        if before == self.originals[path]:
            return self._change(path, before)
        path.write_text(self.originals[path], encoding="utf-8")
        return Edit(path, "revert")

    def _change(self, path: Path, before: str) -> Edit:
        op = self.rng.choice([op for op in self.ops if op != "revert"])
        if op == "empty":  # every document of the file gone (the file stays)
            path.write_text("", encoding="utf-8")
            return Edit(path, "empty the file")
        docs = list(_yaml().load_all(before))
        if op == "route":
            intents = [d for d in docs if isinstance(d, dict) and d.get("kind") ==
                       "GatewayIntent" and isinstance(d.get("spec"), dict)]
            what = self._route(self.rng.choice(intents)["spec"]) if intents else None
        elif op == "adopt":  # another file's first document, also in this one
            donor = self.rng.choice([p for p in self.files if p != path] or [path])
            docs.append(next(iter(_yaml().load_all(self.originals[donor])), None))
            what: str | None = f"adopt the first document of {'/'.join(donor.parts[-2:])}"
        else:
            places = [(c, k, v, p) for d in docs if isinstance(d, dict)
                      for c, k, v, p in _walk(d)]
            what = self._apply(op, places) if places else None
        if what is None:
            return Edit(path, "nothing")
        out = io.StringIO()
        _yaml().dump_all(docs, out)
        path.write_text(out.getvalue(), encoding="utf-8")
        return Edit(path, what)

    def _route(self, spec: dict[str, Any]) -> str | None:
        """A new route in the gateway's namespace, to a Service there, on a hostname of one
        of its listeners (or a new one)."""
        routes = spec.setdefault("routes", [])
        if not isinstance(routes, list):
            return None
        n = self.rng.randrange(1000)
        hosts = [lst["hostname"] for lst in spec.get("listeners") or []
                 if isinstance(lst, dict) and isinstance(lst.get("hostname"), str)]
        host = self.rng.choice(hosts) if hosts else f"fuzz-{n}.fleet.example"
        routes.append({"name": f"fuzz-{n}", "hostnames": [host], "pathPrefix": f"/fuzz{n}",
                       "backends": [{"service": f"fuzz-{n}", "port": 8080}]})
        return f"add route fuzz-{n} to spec.routes"

    def _apply(self, op: str, places: list[tuple[Any, Any, Any, tuple[Any, ...]]]
               ) -> str | None:
        rng = self.rng
        if op == "set":
            leaves = [p for p in places if not isinstance(p[2], dict | list)]
            if not leaves:
                return None
            container, key, value, path = rng.choice(leaves)
            pool = [v for v in self.pools.scalars.get(_name(path), []) if v != value]
            new = rng.choice(pool) if pool and rng.random() < 0.7 else _novel(rng, value)
            container[key] = new
            return f"set {'.'.join(map(str, path))}: {value!r} -> {new!r}"
        if op == "drop":
            container, key, _, path = rng.choice(places)
            del container[key]
            return f"drop {'.'.join(map(str, path))}"
        lists = [p for p in places if isinstance(p[2], list) and p[2]]
        if op == "dup" and lists:
            _, _, items, path = rng.choice(lists)
            items.append(copy.deepcopy(rng.choice(items)))
            return f"dup an item of {'.'.join(map(str, path))}"
        if op == "swap":
            longer = [p for p in lists if len(p[2]) > 1]
            if longer:
                _, _, items, path = rng.choice(longer)
                i, j = rng.sample(range(len(items)), 2)
                items[i], items[j] = items[j], items[i]
                return f"swap items {i} and {j} of {'.'.join(map(str, path))}"
        if op == "graft":
            maps = [p for p in places if isinstance(p[2], dict)]
            rng.shuffle(maps)
            for _, _, mapping, path in maps:
                others = [m for m in self.pools.mappings.get(_signature(path), [])
                          if set(m) - set(mapping)]
                if others:
                    donor = rng.choice(others)
                    key = rng.choice(sorted(set(donor) - set(mapping)))
                    mapping[key] = copy.deepcopy(donor[key])
                    return f"graft {key} into {'.'.join(map(str, path))}"
        return None


@dataclass
class Step:
    """One edit compiled: the delta compile's outcome ("applied" or why not) and what differs
    from a compile from scratch (nothing, when all is well)."""

    edit: Edit
    outcome: str
    code: int  # the compile's exit code
    differences: list[str]


def compile_step(root: Path, scratch: Path, edit: Edit, served: bool = False) -> Step:
    """`mtlsc compile` after `edit` (a delta compile where it applies) against a compile of
    the same files from scratch in `scratch` (the comparison of tests/test_delta.py).
    `served`: the compile runs from `root`, where a `mtlsc serve` answers (the compile from
    scratch never runs in it)."""
    done = mtlsc(root, "compile", env=ENV, cwd=root if served else None)
    fresh, theirs = from_scratch(root, scratch)
    differences = []
    if shown(done) != shown(fresh):
        differences.append(f"printed: exit {done.code} vs {fresh.code}\n"
                           f"{done.stderr.decode()[-2000:]}\n--- from scratch ---\n"
                           f"{fresh.stderr.decode()[-2000:]}")
    if done.code == 0:
        mine = overlays(root)
        differences += [f"overlay file {rel} differs" for rel in sorted(set(mine) | set(theirs))
                        if mine.get(rel) != theirs.get(rel)]
    return Step(edit, delta_of(root), done.code, differences)


def run_sequence(root: Path, scratch: Path, seed: int, steps: int,
                 ops: tuple[str, ...] = OPS, served: bool = False) -> list[Step]:
    """`steps` random edits of the fleet at `root` (compiled once already), each compiled
    and compared; stops at the first difference."""
    editor = Editor(root, seed, ops)
    out: list[Step] = []
    for _ in range(steps):
        last = out[-1] if out else None
        if last is not None and last.code != 0 and last.edit.what != "revert":
            edit = editor.fix(last.edit.path)  # the edit broke the compile: take it back
        else:
            edit = editor.edit()
        step = compile_step(root, scratch, edit, served)
        out.append(step)
        if step.differences:
            break
    return out
