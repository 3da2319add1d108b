"""Fuzzing the loader: mutated policy YAML gives diagnostics, never an exception.

Each example starts from a real policy file (the examples and the golden cases) and applies a
few mutations: byte flips, YAML syntax characters, tags (core, language and local), anchors and
aliases, deep nesting, truncation, random Unicode and random bytes. The result goes through
`load_texts` (the library) and, in a second property, through the `mtlsc validate` command
in-process (click's CliRunner), which must exit 0 or 1 with no traceback. The deadline bounds
the time per example; it is generous because the machine may be loaded.
"""

from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler.cli import main
from compiler.diagnostics import Diagnostic
from compiler.load import load_texts
from tests.support import CASES, REPO

SEEDS = sorted({p.read_bytes() for p in [*REPO.glob("policies/**/*.yaml"),
                                         *CASES.glob("ok-*/*.yaml"),
                                         *CASES.glob("schema-*/*.yaml")][:60]
                if p.is_file()})
SYNTAX = [b":", b"- ", b"[", b"]", b"{", b"}", b",", b"&a ", b"*a", b"? ", b"|", b">", b"'",
          b'"', b"#", b"%", b"@", b"`", b"\t", b"\n", b"---\n", b"...\n", b"<<: *a\n", b"!!",
          b"!!str ", b"!!int ", b"!!python/object/apply:os.system ", b"!foo ", b"!<tag:x> ",
          b"%YAML 1.1\n", b"%TAG !e! tag:e,2000:\n", b"\xef\xbb\xbf", b"\x00", b"\r"]

ALIASES = [b"x: &a [1, 2]\ny: *a\n", b"x: &a [&b [*b]]\n", b"? *a\n: 1\n", b"<<: {a: 1}\n",
           b"x: &a {k: v}\ny: {<<: *a}\n", b"? [a]\n: b\n",
           b"".join(b"l%d: &l%d [" % (i, i) + b", ".join([b"*l%d" % (i - 1)] * 9) + b"]\n"
                    for i in range(1, 9)).replace(b"*l0", b"lol")]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["flip", "syntax", "nest", "cut", "unicode", "bytes",
                                     "alias"]))
        if kind == "flip" and pos < len(data):
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "syntax":
            data[pos:pos] = draw(st.sampled_from(SYNTAX))
        elif kind == "nest":
            depth = draw(st.sampled_from([10, 63, 64, 65, 1000, 20_000]))
            opener = draw(st.sampled_from([b"[", b"{a: ", b"[\n", b"- "]))
            data[pos:pos] = opener * depth
        elif kind == "cut":
            del data[pos:]
        elif kind == "unicode":
            data[pos:pos] = draw(st.text(max_size=8)).encode("utf-8", "surrogatepass")
        elif kind == "bytes":
            data[pos:pos] = draw(st.binary(max_size=8))
        else:
            data[pos:pos] = draw(st.sampled_from(ALIASES))
    return bytes(data)


def _check(diagnostics: list[Diagnostic]) -> None:
    for d in diagnostics:
        assert d.code and d.message
        if d.code.startswith(("YAML", "Duplicate", "File", "Schema")):
            assert d.location is not None, d


@settings(max_examples=400, deadline=timedelta(seconds=5),
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated())
def test_load_texts_gives_diagnostics_never_an_exception(data: bytes) -> None:
    _, diagnostics = load_texts({"policies/f.yaml": data})
    _check(diagnostics)
    as_text, _ = load_texts({"policies/f.yaml": data.decode("utf-8", "replace")})
    assert as_text is not None


@settings(max_examples=150, deadline=timedelta(seconds=10),
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated())
def test_validate_command_never_shows_a_traceback(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        policies = Path(tmp) / "policies"
        policies.mkdir()
        (policies / "f.yaml").write_bytes(data)
        result = CliRunner().invoke(main, ["validate", "--root", tmp, "--format", "json"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code in (0, 1), result.output
    assert "Traceback" not in result.output and "InternalError" not in result.output
