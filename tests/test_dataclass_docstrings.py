"""Every dataclass in the `compiler` package has a docstring of its own.

When a class has no docstring (or an empty one), `dataclasses` writes one at class creation
from `inspect.signature(cls)`: about 0.1 ms per class, paid at every process start (the CLI
and the forked compile child of a delta compile import some ninety of them on the hot path of
a one-intent edit). A docstring of our own costs nothing and says what the object stands for
in the pipeline, which the style guide asks of every public thing anyway. The check reads the
source (AST), so it needs no imports and sees every class, module-level or nested.
"""

from __future__ import annotations

import ast
from pathlib import Path

import compiler

PACKAGE = Path(compiler.__file__).parent


def _dataclass_names(tree: ast.Module) -> tuple[set[str], set[str]]:
    """The names `dataclass` goes by in a module: bare (`from dataclasses import dataclass`)
    and module aliases (`import dataclasses`)."""
    bare, modules = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "dataclasses":
            bare |= {a.asname or a.name for a in node.names if a.name == "dataclass"}
        elif isinstance(node, ast.Import):
            modules |= {a.asname or a.name for a in node.names if a.name == "dataclasses"}
    return bare, modules


def dataclasses_in(source: str, file: str = "<source>") -> list[ast.ClassDef]:
    """Every class in `source` decorated with `dataclass` (bare or called, by any name), in
    line order."""
    tree = ast.parse(source, file)
    bare, modules = _dataclass_names(tree)

    def is_dataclass(decorator: ast.expr) -> bool:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Name):
            return target.id in bare
        return (isinstance(target, ast.Attribute) and target.attr == "dataclass"
                and isinstance(target.value, ast.Name) and target.value.id in modules)

    found = [node for node in ast.walk(tree)
             if isinstance(node, ast.ClassDef) and any(map(is_dataclass, node.decorator_list))]
    return sorted(found, key=lambda node: node.lineno)


def undocumented(source: str, file: str = "<source>") -> list[str]:
    """`file:line Name` of every dataclass in `source` without a non-empty docstring (an
    empty one counts as none: `dataclasses` replaces it too)."""
    return [f"{file}:{node.lineno} {node.name}" for node in dataclasses_in(source, file)
            if not ast.get_docstring(node)]


def _sources() -> dict[str, str]:
    return {str(path.relative_to(PACKAGE.parent)): path.read_text(encoding="utf-8")
            for path in sorted(PACKAGE.rglob("*.py"))}


def test_every_compiler_dataclass_has_a_docstring() -> None:
    offenders = [found for file, source in _sources().items()
                 for found in undocumented(source, file)]
    assert not offenders, "dataclasses without a docstring:\n" + "\n".join(offenders)


def test_the_scan_sees_the_package_dataclasses() -> None:
    # Guards the test above against passing on nothing (a wrong root, a missed decorator form).
    seen = {f"{file} {node.name}" for file, source in _sources().items()
            for node in dataclasses_in(source, file)}
    assert len(seen) >= 100
    assert {"compiler/model.py Gateway", "compiler/diagnostics.py Diagnostic",
            "compiler/k8s/_cel_syntax.py Comprehension", "compiler/pki.py _Leaf"} <= seen


UNDOCUMENTED = '''
import dataclasses
from dataclasses import dataclass, field
from dataclasses import dataclass as dc

@dataclass
class Bare:
    x: int

@dataclass(frozen=True, slots=True)
class Called:
    x: int = field(default=0)

@dataclasses.dataclass
class Qualified:
    x: int

@dc(order=True)
class Aliased:
    x: int

@dataclass
class Empty:
    ""

    x: int

def build() -> None:
    @dataclass
    class Nested:
        x: int

@dataclass
class Commented:
    # a comment is not a docstring
    x: int
'''

DOCUMENTED = '''
import functools
from dataclasses import dataclass

@dataclass
class Documented:
    """What it stands for."""

    x: int

class Plain:
    x: int

@functools.total_ordering
class Other:
    x: int
'''


def test_the_check_finds_each_form_of_undocumented_dataclass() -> None:
    assert [entry.split()[1] for entry in undocumented(UNDOCUMENTED)] == [
        "Bare", "Called", "Qualified", "Aliased", "Empty", "Nested", "Commented"]
    assert undocumented(DOCUMENTED) == []
