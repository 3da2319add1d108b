"""A worker process writes the files of the units it computed straight into their cluster's
staging directory (docs/output.md, "Worker processes write"), instead of sending their bytes
back to the writer, which would then write them itself.

The writer journals and creates the staging directory before any task of that cluster is
queued, and only for an output directory that does not exist yet (a new overlay has nothing to
compare with). What comes back is each file's `Written` record (digest, size, identity on
disk): enough for the write manifest and the run record. Merged ReferenceGrants, files with an
unsafe name (the parent reports them, `confine.check_output_paths`) and every other file of
the overlay stay with the parent. A file that another worker already wrote (an object several
gateways emit; identical bytes, or else the compile fails with an ObjectConflict) is left as
it is.
"""

from __future__ import annotations

from . import fsops, manifest
from .manifest import Written
from .render_units import Content, Piece, Unit


def stage_unit(stage: str, unit: Unit) -> Unit:
    """Write `unit`'s files below the staging directory `stage`; the unit with `Written`
    records in place of the bytes written. Raises OSError (the writer reports it)."""
    pieces = tuple(_piece(stage, p) for p in unit.pieces)
    envoy = None if unit.envoy is None else (unit.envoy[0], _write(stage, *unit.envoy))
    return Unit(pieces, envoy, unit.problems)


def _piece(stage: str, piece: Piece) -> Piece:
    if piece.rendered is not None:  # a ReferenceGrant: merged and written by the parent
        return piece
    return Piece(piece.identity, piece.digest, piece.file,
                 _write(stage, piece.file, piece.data, piece.digest), piece.problems,
                 piece.where, None)


def _plain(rel: str) -> bool:
    return not rel.startswith("/") and all(c not in ("", ".", "..") for c in rel.split("/"))


def _write(stage: str, rel: str, data: Content, digest: str = "") -> Content:
    """`digest`: the content's, when known (a piece's digest is the one of its bytes)."""
    if not isinstance(data, bytes) or not _plain(rel):
        return data
    digest = digest or manifest.digest(data)
    try:
        st = fsops.write_below(stage, rel, data)
    except FileExistsError:
        return Written(digest, len(data), None)
    return Written(digest, len(data), manifest.stat_key(st))
