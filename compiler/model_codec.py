"""Plain-JSON forms of resolved gateways and diagnostics, for the incremental record.

The encoders and decoders are derived once from the dataclasses' type hints, so a field added
to the model is covered (or, for a type this module does not know, refused at import) without
editing this file. Decoding is strict: a value of the wrong shape raises (TypeError,
ValueError, KeyError, IndexError), and the caller then recomputes instead of trusting it. The
round trip is exact: `canonical(decode(encode(x))) == canonical(x)` (tests/test_incremental.py),
including fields that do not take part in `==` (`ClientRestrictions.origin`).
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from .diagnostics import Diagnostic
from .model import Gateway

T = TypeVar("T")
Codec = tuple[Callable[[Any], Any], Callable[[Any], Any]]  # (encode, decode)
_CODECS: dict[object, Codec] = {}


def _scalar(kind: type) -> Codec:
    def decode(raw: Any) -> Any:
        if type(raw) is not kind:
            raise TypeError(f"expected {kind.__name__}")
        return raw

    return (lambda value: value), decode


def _optional(inner: Codec) -> Codec:
    enc, dec = inner
    return ((lambda value: None if value is None else enc(value)),
            (lambda raw: None if raw is None else dec(raw)))


def _sequence(inner: Codec, kind: type) -> Codec:
    enc, dec = inner
    if kind is frozenset:
        return ((lambda value: sorted(enc(item) for item in value)),
                (lambda raw: frozenset(dec(item) for item in _list(raw))))
    return ((lambda value: [enc(item) for item in value]),
            (lambda raw: tuple([dec(item) for item in _list(raw)])))


def _list(raw: Any) -> list[Any]:
    if type(raw) is not list:
        raise TypeError("expected a list")
    return raw


def _enum(kind: type[enum.Enum]) -> Codec:
    return (lambda value: value.value), kind


def _dataclass(kind: type) -> Codec:
    names = [f.name for f in dataclasses.fields(kind)]
    hints = typing.get_type_hints(kind)
    codecs = [codec_for(hints[name]) for name in names]
    pairs = list(zip(names, [enc for enc, _ in codecs], strict=True))

    def encode(value: Any) -> list[Any]:
        return [enc(getattr(value, name)) for name, enc in pairs]

    return encode, _decoder(kind, [hints[name] for name in names],
                            [dec for _, dec in codecs])


def _decoder(kind: type, hints: list[Any], decoders: list[Callable[[Any], Any]],
             ) -> Callable[[Any], Any]:
    """A decoder for one dataclass, generated from its field types (a decode runs once per
    node of every gateway taken from the record, so the checks are spelled out inline)."""
    args = []
    scope: dict[str, Any] = {"kind": kind, "bad": _bad}
    for index, (hint, dec) in enumerate(zip(hints, decoders, strict=True)):
        item = f"raw[{index}]"
        if hint in (str, int, bool):
            scope[f"t{index}"] = hint
            args.append(f"({item} if type({item}) is t{index} else bad())")
        else:
            scope[f"d{index}"] = dec
            args.append(f"d{index}({item})")
    source = (f"def decode(raw):\n"
              f"    if type(raw) is not list or len(raw) != {len(hints)}:\n"
              f"        bad()\n"
              f"    return kind({', '.join(args)})\n")
    exec(compile(source, f"<decode {kind.__name__}>", "exec"), scope)
    found: Callable[[Any], Any] = scope["decode"]
    return found


def _bad() -> Any:
    raise TypeError("not the plain form of a model value")


def codec_for(hint: Any) -> Codec:
    """The (encode, decode) pair for a type hint; TypeError for a type with no plain form."""
    found = _CODECS.get(hint)
    if found is not None:
        return found
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in (str, int, bool):
        made = _scalar(hint)
    elif origin in (types.UnionType, typing.Union) and len(args) == 2 and type(None) in args:
        made = _optional(codec_for(next(a for a in args if a is not type(None))))
    elif origin in (tuple, frozenset) and (origin is frozenset or args[1:] == (Ellipsis,)):
        made = _sequence(codec_for(args[0]), origin)
    elif isinstance(hint, type) and issubclass(hint, enum.Enum):
        made = _enum(hint)
    elif isinstance(hint, type) and dataclasses.is_dataclass(hint):
        made = _dataclass(hint)
    else:
        raise TypeError(f"no plain form for {hint!r}")
    _CODECS[hint] = made
    return made


_GATEWAY = codec_for(Gateway)
_DIAGNOSTIC = codec_for(Diagnostic)


def gateway_to_json(gw: Gateway) -> Any:
    return _GATEWAY[0](gw)


def gateway_from_json(raw: Any) -> Gateway:
    found: Gateway = _GATEWAY[1](raw)
    return found


def diagnostic_to_json(d: Diagnostic) -> Any:
    return _DIAGNOSTIC[0](d)


def diagnostic_from_json(raw: Any) -> Diagnostic:
    found: Diagnostic = _DIAGNOSTIC[1](raw)
    return found
