"""The stages a compile's diagnostics come from (`diagnostics.stage_spans`), as the run record
keeps them (`run_record.stages_text`): what a delta compile of an edit with errors reports of
the other files is what a compile stopping at that stage made (tests/test_delta.py runs it)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from compiler.diagnostics import (
    LAST_STAGE,
    Diagnostic,
    Location,
    error,
    merge_key,
    sorted_diagnostics,
    stage_spans,
    warning,
)
from compiler.run_record import stages_of, stages_text


def at(line: int, code: str = "W") -> Diagnostic:
    return warning(code, f"finding {line}", Location("a.yaml", line, 1))


def test_each_merged_diagnostic_gets_the_first_and_last_stage_of_its_parts() -> None:
    a, b, c = at(1), at(2), at(3)
    made = [a, b.in_clusters("c0"), c, b.in_clusters("c1"), at(4)]
    spans = stage_spans(made, [1, 3])  # stage 1: [a], stage 2: [b@c0, c], then the rest
    assert spans[merge_key(a)] == (1, 1)
    assert spans[merge_key(b)] == (2, LAST_STAGE)  # made in part before a stop at stage 2
    assert spans[merge_key(c)] == (2, 2)
    assert spans[merge_key(at(4))] == (LAST_STAGE, LAST_STAGE)


def test_a_compile_that_stopped_has_no_later_stage() -> None:
    made = [at(1), error("E", "bad", Location("b.yaml", 1, 1))]
    assert set(stage_spans(made, [2]).values()) == {(1, 1)}


@given(st.lists(st.tuples(st.integers(1, 6), st.sampled_from(["c0", "c1", "c2"])),
                max_size=30),
       st.lists(st.integers(0, 30), max_size=3))
def test_what_a_stop_keeps_is_what_the_compile_up_to_there_made(
        parts: list[tuple[int, str]], cuts: list[int]) -> None:
    """For any diagnostics and stage ends: a merged diagnostic whose span ends at stage k or
    before is exactly what merging only the diagnostics up to stage k's end gives."""
    made = [at(line).in_clusters(cluster) for line, cluster in parts]
    marks = sorted(min(c, len(made)) for c in cuts)
    spans = stage_spans(made, marks)
    merged = sorted_diagnostics(made)
    for stop, end in enumerate(marks, start=1):
        upto = sorted_diagnostics(made[:end])
        kept = [d for d in merged if spans[merge_key(d)][1] <= stop]
        assert kept == [d for d in upto if spans[merge_key(d)][1] <= stop]
        assert {merge_key(d) for d in upto} == \
            {merge_key(d) for d in merged if spans[merge_key(d)][0] <= stop}


def test_the_record_keeps_two_digits_per_diagnostic() -> None:
    spans = [(1, 1), (2, LAST_STAGE), (LAST_STAGE, LAST_STAGE)]
    text = stages_text(spans)
    assert text == "112999"
    assert stages_of(text, 3) == spans
    for wrong in (None, 3, "11299", "1129x9", "112999"):
        assert stages_of(wrong, 3 if wrong != "112999" else 2) is None
