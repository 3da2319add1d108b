"""Policy file bytes → text that may be handed to the YAML parser.

Policy files come from pull requests, so they are checked before parsing: at most
`MAX_FILE_BYTES`, UTF-8 only (a leading UTF-8 byte order mark is accepted), and no character
YAML does not allow (NUL and the other control characters). Each problem is one `YAMLEncoding`
or `FileTooLarge` diagnostic at the line and column of the first offending character.
"""

from __future__ import annotations

import re

from .diagnostics import Diagnostic, Location, error

MAX_FILE_BYTES = 1024 * 1024

# YAML 1.2's printable characters are tab, line breaks, 20-7E, 85, A0-D7FF, E000-FFFD and
# 10000-10FFFF; the rest is refused. Spelled as the complement: the same set (a test compares
# every code point), compiled about 8 times faster than the negated class, at every start-up.
NOT_PRINTABLE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufffe\uffff]")
_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
_WIDE_BOMS = ((b"\x00\x00\xfe\xff", "UTF-32"), (b"\xff\xfe\x00\x00", "UTF-32"),
              (b"\xfe\xff", "UTF-16"), (b"\xff\xfe", "UTF-16"))
_UTF8_HINT = "save the file as UTF-8 (without a byte order mark, or with the UTF-8 one)"


def line_col(text: str, pos: int) -> tuple[int, int]:
    """1-based line and column (in characters) of `pos`, counting YAML's line breaks."""
    line, start = 1, 0
    for brk in _BREAK.finditer(text, 0, pos):
        line, start = line + 1, brk.end()
    return line, pos - start + 1


def too_large(size: int, file: str) -> Diagnostic:
    return error("FileTooLarge", f"policy file is {size} bytes; the limit is {MAX_FILE_BYTES} "
                 "bytes", Location(file, 1, 1),
                 "split it into several files (one per gateway is the convention)")


def decode(data: bytes | str, file: str) -> tuple[str, Diagnostic | None]:
    """The checked text of a policy file, or a diagnostic saying why it cannot be read."""
    if isinstance(data, bytes):
        if len(data) > MAX_FILE_BYTES:
            return "", too_large(len(data), file)
        text, problem = _utf8(data, file)
        if problem is not None:
            return "", problem
    else:
        text = data
        if len(text) > MAX_FILE_BYTES or (not text.isascii()
                                          and len(text.encode("utf-8", "surrogatepass"))
                                          > MAX_FILE_BYTES):
            return "", too_large(len(text.encode("utf-8", "surrogatepass")), file)
    bad = NOT_PRINTABLE.search(text)
    if bad is not None:
        return "", _control(text, bad.start(), file)
    return text, None


def _utf8(data: bytes, file: str) -> tuple[str, Diagnostic | None]:
    for bom, name in _WIDE_BOMS:
        if data.startswith(bom):
            return "", error("YAMLEncoding", f"policy file is {name} encoded; mtlsc reads UTF-8 "
                             "only", Location(file, 1, 1), _UTF8_HINT)
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        before = data[:exc.start].decode("utf-8")
        line, col = line_col(before, len(before))
        return "", error("YAMLEncoding", f"invalid UTF-8: byte 0x{data[exc.start]:02x} at offset "
                         f"{exc.start}", Location(file, line, col), _UTF8_HINT)


def _control(text: str, pos: int, file: str) -> Diagnostic:
    line, col = line_col(text, pos)
    char = text[pos]
    hint = ("a NUL byte usually means a UTF-16 or binary file: " + _UTF8_HINT) if char == "\0" \
        else "remove the character, or write it as an escape (\"\\x..\") in a double-quoted string"
    return error("YAMLEncoding", f"control character U+{ord(char):04X} is not allowed in YAML",
                 Location(file, line, col), hint)
