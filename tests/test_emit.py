"""The emitter: whatever data goes in comes back out of YAML 1.2 and YAML 1.1 readers, and the
layout is the canonical one."""

from __future__ import annotations

from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from compiler.emit import HEADER, dumps, to_yaml, to_yaml_joining, to_yaml_reusing

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63),
    st.text(max_size=40),
    st.sampled_from(["yes", "on", "Off", "~", "1.0", "0777", "0x1F", "1e3", ".inf", "2026-11-22",
                     "12:30", "- x", "a: b", "#c", "@type", "*x", "&y", "!z", "%p", "`q`",
                     " lead", "trail ", "", "-", "?", ":", "a:b", "=", "<<", "|", ">",
                     "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
                     "line\n", "two\n\n", "\ttab\n", "x\ny", " indented\nblock\n"]),
)
DATA = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.one_of(st.text(max_size=12), st.sampled_from(
        ["name", "kind", "on", "1", "@type", "a: b"])), inner, max_size=4)), max_leaves=25)


def _load(text: str, version: str) -> Any:
    return YAML(typ="safe", pure=True).load(f"%YAML {version}\n---\n{text}")


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.text(max_size=12), DATA, max_size=5))
@example({"\ufffe": None, "k": "\x85 \u2028 \ufeff \U0001f600 \x7f"})
def test_round_trip_through_yaml_12_and_11_readers(data: dict[str, Any]) -> None:
    text = dumps(data)
    assert _load(text, "1.2") == data
    assert _load(text, "1.1") == data


def test_canonical_layout() -> None:
    obj = {"spec": {"b": 1, "a": [{"x": 1, "name": "nm"}, "s"], "e": {}, "l": []},
           "metadata": {"namespace": "ns", "labels": {"z": "yes"}, "name": "m"},
           "kind": "K", "apiVersion": "v1", "data": {"ca.crt": "A\nB\n"}}
    assert to_yaml(obj).decode() == HEADER + (
        "apiVersion: v1\nkind: K\nmetadata:\n  name: m\n  namespace: ns\n  labels:\n"
        '    z: "yes"\ndata:\n  ca.crt: |\n    A\n    B\nspec:\n  a:\n  - name: nm\n    x: 1\n'
        "  - s\n  b: 1\n  e: {}\n  l: []\n")


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=12), DATA, max_size=5), st.text(max_size=12), DATA)
def test_a_top_level_entry_emits_to_lines_of_its_own(data: dict[str, Any], key: str,
                                                      value: Any) -> None:
    """`to_yaml_reusing`: the text kept for one top-level entry stands in for emitting an
    equal value again, beside any other entries."""
    whole, block = to_yaml_reusing({**data, key: value}, key, None)
    assert whole == to_yaml({**data, key: value})
    other = {k: v for k, v in data.items() if k != key}
    assert to_yaml_reusing({key: value, **other}, key, block) == \
        (to_yaml({**other, key: value}), block)
    assert to_yaml_reusing(data, "absent-key-longer-than-12", None) == (to_yaml(data), "")
    assert to_yaml_joining(other, key, block) == to_yaml({**other, key: value})
