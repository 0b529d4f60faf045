"""Read and write the label and annotation files of a Kubernetes downwardAPI volume.

For ``fieldRef: metadata.labels`` and ``fieldRef: metadata.annotations`` the kubelet writes the
whole map into one file: the keys sorted, one line per entry made of the key, ``=`` and the
value quoted by Go's ``strconv.Quote``, the lines joined by ``"\\n"`` with no trailing newline.
An empty map is an empty file::

    app="shop"
    role="canary"
    rollouts-pod-template-hash="6d8f7c9b5"

:func:`parse_map` is the exact inverse of that writer and :func:`format_map` renders a map byte
for byte as the kubelet does. :func:`quote` and :func:`unquote` are Go's ``strconv.Quote`` and
``strconv.Unquote`` for double-quoted strings.

What the parser accepts beyond what the kubelet writes (hand-written files, test fixtures):

* a single trailing newline, and ``"\\r\\n"`` line ends;
* a UTF-8 byte order mark at the very start, which is ignored;
* every escape Go's ``strconv.Unquote`` accepts, including octal ``\\NNN`` and byte escapes
  ``\\xHH`` that spell UTF-8 sequences (``"\\xc3\\xa9"`` is ``"é"``), and any literal
  character except raw control characters (no Unicode printability table is involved).

Empty lines are rejected (the kubelet never writes them), except for the single trailing
newline. Malformed input raises :class:`~canaryconf.DownwardAPIFormatError`, a
:class:`ValueError`, naming the source, the 1-based line and the key when known, and never any
part of a value: values can be secrets.

This module is a low layer: it depends on the standard library only.
"""

from __future__ import annotations

import bisect
import codecs
import functools
import itertools
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from json.decoder import JSONDecoder
from typing import Any

from canaryconf._errors import DownwardAPIFormatError
from canaryconf._goprint import TABLES

try:
    from _json import scanstring as _scanstring
except ImportError:  # pragma: no cover - a Python without the C accelerator of json
    from json import decoder as _json_decoder

    _scanstring = _json_decoder.py_scanstring  # type: ignore[attr-defined]

__all__ = [
    "GO_UNICODE_VERSION",
    "DownwardAPIFormatError",
    "decode_text",
    "format_map",
    "go_printable",
    "parse_map",
    "quote",
    "unquote",
]

# --------------------------------------------------------------------------------------------
# Grammar. A value character is anything but a quote, a backslash, a raw control character
# or a lone surrogate (the latter only reachable through a ``str`` argument).
_VALUE_CHAR = r'[^"\\\x00-\x1f\x7f\ud800-\udfff]'
_ESCAPE = r'\\(?:[abfnrtv\\"]|x[0-9a-fA-F]{2}|[0-3][0-7]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8})'
_BODY = rf"{_VALUE_CHAR}*(?:{_ESCAPE}{_VALUE_CHAR}*)*"

# A quoted value, whole and well-formed.
_QUOTED_RE = re.compile(rf'"({_BODY})"')
_RAW_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")
# Escape tokens of a syntactically valid body, as UTF-8 bytes.
_BYTES_ESCAPE_RE = re.compile(
    rb'\\(?:([abfnrtv\\"])|x([0-9a-fA-F]{2})|([0-3][0-7]{2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8}))'
)
# Tokens for diagnosing a malformed value, one at a time.
_DIAG_RE = re.compile(
    r'(?P<text>[^"\\]+)'
    r'|(?P<simple>\\[abfnrtv\\"])'
    r"|(?P<hex>\\x[0-9a-fA-F]{2})"
    r"|(?P<oct>\\[0-7]{3})"
    r"|(?P<u>\\u[0-9a-fA-F]{4})"
    r"|(?P<U>\\U[0-9a-fA-F]{8})"
    r"|(?P<bad>\\.?)"
    r'|(?P<quote>")',
    re.S,
)

_SIMPLE_BYTES = {
    b"a": b"\a",
    b"b": b"\b",
    b"f": b"\f",
    b"n": b"\n",
    b"r": b"\r",
    b"t": b"\t",
    b"v": b"\v",
    b"\\": b"\\",
    b'"': b'"',
}

_MAX_RUNE = 0x10FFFF
# The raw control characters but the newline, as code points and as characters; the bytes
# of all others.
_CONTROL_CODES = (*range(0x0A), *range(0x0B, 0x20), 0x7F)
_CONTROL_CHARS = tuple(map(chr, _CONTROL_CODES))
_NOT_CONTROL_BYTES = bytes(b for b in range(256) if 0x20 <= b != 0x7F)
_SEARCH_FROM = 4096  # see _has_control_but_newline
_SEPARATOR = "\x1e"  # a raw control character, so never part of a valid line
# An escape other than the ones JSON's scanner reads exactly as Go does (\b \f \n \r \t \\
# \"): Go-only ones (\a \v \x \U octal), ones Go rejects (\/ \' and unknown ones), and \u,
# left out because JSON accepts surrogates (a simpler pattern is a faster search). A hit
# right after an escaped backslash is a false alarm that only costs speed.
_NOT_JSON_ESCAPE_RE = re.compile(r'\\[^bfnrt\\"]')
# A possible byte escape >= 0x80, or \u / \U escape naming a surrogate (same caveat).
_NEEDS_BYTES_RE = re.compile(r"\\(?:x[89a-fA-F]|[23][0-7]|u[dD][89a-fA-F]|U0000[dD][89a-fA-F])")
# An escape JSON does not read as Go does (as _NOT_JSON_ESCAPE_RE), exactly: the backslash
# ends an odd run of them (the others pair up as escaped backslashes). Faster than
# _find_go_escape on text with many escaped backslashes (no false alarms to skip), three
# times slower on JSON documents (its look-behind runs at every \" ): values with
# non-ASCII text use it, the JSON arrays of ASCII values _find_go_escape.
_GO_ESCAPE_RE = re.compile(r'\\(?<!\\\\)(?:\\\\)*[^bfnrt"\\]')
_REPEAT_KEY_END = itertools.repeat('="')
_REPEAT_ONE = itertools.repeat(1)
_REPEAT_QUOTE = itertools.repeat('"')
# JSON's C scanner: parses one JSON value at an index and returns it with its end (no
# leading or trailing whitespace allowed: each array built here starts and ends with a
# bracket).
_scan_json: Callable[[str, int], tuple[Any, int]]
_scan_json = JSONDecoder().scan_once  # type: ignore[attr-defined]


# Quoted values without their opening quote, joined by _SEPARATOR, whose escapes all name
# code points (no byte escape >= 0x80, no surrogate).
_CODE_POINT_ESCAPE = (
    r'\\(?:[abfnrtv\\"]|x[0-7][0-9a-fA-F]|[01][0-7]{2}'
    r"|u(?![dD][89a-fA-F])[0-9a-fA-F]{4}|U(?!0000[dD][89a-fA-F])[0-9a-fA-F]{8})"
)
_CODE_POINT_BODY = rf"{_VALUE_CHAR}*(?:{_CODE_POINT_ESCAPE}{_VALUE_CHAR}*)*"
_CODE_POINT_REST_LIST_RE = re.compile(rf'{_CODE_POINT_BODY}"(?:{_SEPARATOR}{_CODE_POINT_BODY}")*')


class _Problem(Exception):
    """Internal: a value is malformed. ``column`` says where, relative to the start of the
    text being examined (each caller turns it into a column of the line)."""

    def __init__(self, reason: str, column: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.column = column


# --------------------------------------------------------------------------------------------
# Decoding


def _go_utf8_decode(data: bytes) -> str:
    """Decode like Go does when it turns bytes into runes: each byte that does not start a
    valid UTF-8 sequence becomes one U+FFFD (``utf8.DecodeRune`` returns width 1). Python's
    ``errors="replace"`` would instead replace a truncated sequence as a whole."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    view = memoryview(data)  # slices without copying: linear time however many bad bytes
    parts: list[str] = []
    position = 0
    while True:
        try:
            parts.append(codecs.utf_8_decode(view[position:], "strict", True)[0])
        except UnicodeDecodeError as exc:
            bad = position + exc.start
            parts.append(codecs.utf_8_decode(view[position:bad], "strict", True)[0])
            parts.append("\ufffd")
            position = bad + 1
        else:
            return "".join(parts)


def decode_text(data: bytes) -> str:
    """Decode a file's bytes to text as the kubelet's Go code sees them: one U+FFFD per byte
    that does not start a valid UTF-8 sequence (Python's ``errors="replace"`` would give one
    for a whole truncated sequence).

    >>> decode_text(b"caf\\xc3\\xa9 \\xe2\\x82")
    'café \\ufffd\\ufffd'
    """
    return _go_utf8_decode(data)


def _rune_bytes(code: int, column: int) -> bytes:
    if code > _MAX_RUNE:
        raise _Problem("\\U escape beyond U+10FFFF", column)
    if 0xD800 <= code <= 0xDFFF:
        raise _Problem("escape names a surrogate code point (U+D800..U+DFFF)", column)
    return chr(code).encode("utf-8")


def _bytes_escape(match: re.Match[bytes]) -> bytes:
    simple, hex2, octal, u4, u8 = match.groups()
    if simple is not None:
        return _SIMPLE_BYTES[simple]
    if hex2 is not None:
        return bytes((int(hex2, 16),))
    if octal is not None:
        return bytes((int(octal, 8),))
    return _rune_bytes(int(u4 if u4 is not None else u8, 16), match.start())


def _locate_bad_rune(body: str) -> _Problem:
    """Find the \\u / \\U escape that names a surrogate or is out of range."""
    try:
        _BYTES_ESCAPE_RE.sub(_bytes_escape, body.encode("utf-8"))
    except _Problem as problem:
        # The column counted bytes; recount in characters.
        prefix = body.encode("utf-8")[: problem.column].decode("utf-8", "replace")
        return _Problem(problem.reason, len(prefix) + 1)
    return _Problem("escape names an invalid code point", 1)  # pragma: no cover


def _decode_body(body: str) -> str:
    """Decode the inside of a quoted value that matched ``_BODY`` (so every escape is
    syntactically valid). Raises ``_Problem`` for surrogates and code points > U+10FFFF."""
    if "\\" not in body:
        return body
    if _NEEDS_BYTES_RE.search(body) is None:
        # No byte escape >= 0x80 and no surrogate, so every escape names a valid code point
        # (or is a \U beyond U+10FFFF, which the codec rejects): Python's unicode_escape codec
        # then decodes Go's (already validated) escapes exactly. Literal characters above
        # U+00FF become \u/\U escapes through backslashreplace and come back unchanged.
        try:
            text = body.encode("latin-1", "backslashreplace").decode("unicode_escape")
        except UnicodeDecodeError:  # a \U escape beyond U+10FFFF
            raise _locate_bad_rune(body) from None
        return text
    # Byte escapes: build the value as bytes (literal text as UTF-8, \u/\U as the UTF-8 of the
    # code point, \x and octal as raw bytes), then decode as Go reads it.
    try:
        raw = _BYTES_ESCAPE_RE.sub(_bytes_escape, body.encode("utf-8"))
    except _Problem:
        raise _locate_bad_rune(body) from None
    return _go_utf8_decode(raw)


def _diagnose(quoted: str) -> _Problem:
    """Explain why ``quoted`` (which starts with a double quote) is not a valid Go string.
    Columns are 1-based within ``quoted``. Never quotes the text itself."""
    pos = 1
    end = len(quoted)
    while pos < end:
        match = _DIAG_RE.match(quoted, pos)
        assert match is not None  # the alternatives cover every character
        kind = match.lastgroup
        column = pos + 1
        if kind == "text":
            raw = _RAW_CONTROL_RE.search(match.group())
            if raw is not None:
                return _Problem("raw control character in value", pos + raw.start() + 1)
            if _SURROGATE_RE.search(match.group()) is not None:
                return _Problem("lone surrogate in value", column)
        elif kind == "oct":
            if int(match.group()[1:], 8) > 0xFF:
                return _Problem("octal escape above \\377", column)
        elif kind in ("u", "U"):
            try:
                _rune_bytes(int(match.group()[2:], 16), column)
            except _Problem as problem:
                return problem
        elif kind == "bad":
            token = match.group()
            if len(token) == 1:
                return _Problem("unterminated quote (value ends with a backslash)", column)
            letter = token[1]
            if letter == "x":
                return _Problem("bad \\x escape: needs exactly 2 hex digits", column)
            if letter in "uU":
                digits = 4 if letter == "u" else 8
                return _Problem(f"bad \\{letter} escape: needs exactly {digits} hex digits", column)
            if letter in "01234567":
                return _Problem("bad octal escape: needs exactly 3 octal digits", column)
            if letter == "'":
                return _Problem("\\' is not a valid escape in a double-quoted string", column)
            return _Problem("unknown escape sequence", column)
        elif kind == "quote":
            if match.end() != end:
                return _Problem("text after the closing quote", match.end() + 1)
            return _Problem("invalid value", 1)  # pragma: no cover - valid after all
        pos = match.end()
    return _Problem("unterminated quote", end + 1)


def _parse_value(quoted: str) -> str:
    """Decode one quoted value (starting with ``"``), raising ``_Problem`` if malformed."""
    if "\\" not in quoted:
        close = quoted.find('"', 1)
        if close == len(quoted) - 1 and _RAW_CONTROL_RE.search(quoted) is None:
            body = quoted[1:-1]
            if _SURROGATE_RE.search(body) is None:
                return body
        raise _diagnose(quoted)
    match = _QUOTED_RE.fullmatch(quoted)
    if match is None:
        raise _diagnose(quoted)
    try:
        return _decode_body(match.group(1))
    except _Problem as problem:
        raise _Problem(problem.reason, problem.column + 1) from None


def unquote(quoted: str) -> str:
    """Decode one Go double-quoted string literal (``strconv.Unquote``).

    Byte escapes (``\\xHH``, octal ``\\NNN``) are bytes; together with the surrounding text
    they are read as UTF-8, and each byte that is not part of a valid UTF-8 sequence becomes
    U+FFFD, as in Go. Raises :class:`DownwardAPIFormatError` (a :class:`ValueError`) if
    ``quoted`` is not a well-formed double-quoted string; the message never contains it.

    >>> unquote('"caf\\\\xc3\\\\xa9 \\\\u2192 \\\\"x\\\\""')
    'café → "x"'
    """
    if not quoted.startswith('"'):
        raise DownwardAPIFormatError("value does not start with a double quote")
    try:
        return _parse_value(quoted)
    except _Problem as problem:
        raise DownwardAPIFormatError(f"{problem.reason} (column {problem.column})") from None


# --------------------------------------------------------------------------------------------
# Parsing a whole file


def _line_error(
    reason: str, source: str | None, line: int, key: str | None
) -> DownwardAPIFormatError:
    return DownwardAPIFormatError(reason, source=source, line=line, key=key)


def _decode_bytes(data: bytes, source: str | None) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = exc.start
    line_start = data.rfind(b"\n", 0, bad) + 1
    equals = data.find(b"=", line_start, bad)
    key = data[line_start:equals].decode("utf-8") if equals > line_start else None
    if key is not None and _RAW_CONTROL_RE.search(key):
        key = None  # as _parse_slow reports such a key
    column = len(data[line_start:bad].decode("utf-8")) + 1
    raise _line_error(
        f"invalid UTF-8 (column {column})", source, data.count(b"\n", 0, bad) + 1, key
    )


def _parse_slow(text: str, source: str | None) -> dict[str, str]:
    """The reference parser, line by line, with exact error reporting: it decides every
    file the fast paths decline."""
    result: dict[str, str] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        if line.endswith("\r"):
            line = line[:-1]  # noqa: PLW2901
        if not line:
            raise _line_error("empty line", source, number, None)
        equals = line.find("=")
        if equals < 0:
            raise _line_error("missing '=' between key and value", source, number, None)
        if equals == 0:
            raise _line_error("empty key", source, number, None)
        key = line[:equals]
        if _RAW_CONTROL_RE.search(key) or _SURROGATE_RE.search(key):
            raise _line_error("raw control character in key", source, number, None)
        quoted = line[equals + 1 :]
        if not quoted.startswith('"'):
            raise _line_error(
                "value does not start with a double quote right after '='", source, number, key
            )
        try:
            value = _parse_value(quoted)
        except _Problem as problem:
            reason = f"{problem.reason} (column {equals + 1 + problem.column})"
            raise _line_error(reason, source, number, key) from None
        if key in result:
            raise _line_error("duplicate key", source, number, key)
        result[key] = value
    return result


def parse_map(text: str | bytes, *, source: str | None = None) -> dict[str, str]:
    """Parse a label or annotation file written by the kubelet into a ``dict``.

    ``text`` is the file content (``bytes`` are decoded as UTF-8); ``source`` names the file
    in error messages. Keys are everything before the first ``=`` of a line; the value is a
    Go double-quoted string right after it, with every escape Go's ``strconv.Unquote``
    accepts. Byte escapes (``\\xHH``, octal ``\\NNN``) are bytes: with the surrounding text
    they are read as UTF-8, and each byte that does not belong to a valid UTF-8 sequence
    becomes U+FFFD, as Go (``utf8.DecodeRune``, ``encoding/json``) does, so the result is
    deterministic even for values that were not valid UTF-8.

    An empty file (or a lone newline) is an empty map; one trailing newline and ``"\\r\\n"``
    line ends are accepted; any other empty line is an error.

    Raises :class:`DownwardAPIFormatError` (a :class:`ValueError`) with ``source``, ``line``
    and ``key`` set, whose message never contains any part of a value.

    >>> parse_map('app="shop"\\nrole="canary"')
    {'app': 'shop', 'role': 'canary'}
    >>> parse_map(b'flags="{\\\\"ratio\\\\": 0.25}\\\\n"\\n')
    {'flags': '{"ratio": 0.25}\\n'}
    >>> parse_map('app=shop', source='labels')
    Traceback (most recent call last):
        ...
    canaryconf.DownwardAPIFormatError: labels, line 1, key 'app': value does not start \
with a double quote right after '='
    """
    if isinstance(text, str):
        if text.startswith("\ufeff"):
            text = text[1:]
        if text.endswith("\n"):
            text = text[:-1]
            if text.endswith("\r"):
                text = text[:-1]
        if not text:
            return {}
        result = _parse_fast(text)
        if result is None:
            # Something is unusual: an error to report precisely, or a rare construct.
            result = _parse_slow(text, source)
    else:
        data = bytes(text)
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        if data.endswith(b"\n"):
            data = data[:-1]
            if data.endswith(b"\r"):
                data = data[:-1]
        if not data:
            return {}
        result = _parse_fast_bytes(data)
        if result is None:
            result = _parse_slow(_decode_bytes(data, source), source)
    return result


# The fast paths below parse a well-formed file with C-speed string methods, or return
# None (then the exact line-by-line parser decides). They never accept what _parse_slow
# rejects and never decode differently: every shortcut is either exact or bails out.


def _parse_fast(
    text: str, *, utf8_as_latin1: bool = False, data: bytes | None = None
) -> dict[str, str] | None:
    """``utf8_as_latin1``: ``text`` is UTF-8 bytes decoded as Latin-1 (one character per
    byte, so no wide string for the whole file); keys and values with non-ASCII characters
    are decoded again, one by one. ``data``: the UTF-8 bytes ``text`` was decoded from
    (then it has no lone surrogates)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n")
        data = None if data is None else data.replace(b"\r\n", b"\n")
    if "\\" not in text:
        return None if utf8_as_latin1 else _parse_fast_plain(text, data)
    if "\x7f" in text:
        return None  # a raw DEL, which JSON lets through
    lines = text.split("\n")
    try:
        # key -> rest (the value after its opening quote), in the order of the lines. Each
        # line's [key, rest] list is freed as soon as the dict holds its two strings: a
        # thousand containers alive at once would set off the cyclic garbage collector
        # (and, now and then, a full collection of the whole heap) on every parse.
        pairs = dict(map(str.split, lines, _REPEAT_KEY_END, _REPEAT_ONE))
    except ValueError:  # a line without '="'
        return None
    if len(pairs) != len(lines) or "" in pairs:
        return None  # a duplicate or an empty key
    keys: Sequence[str] = list(pairs)
    rests = list(pairs.values())
    if text.isascii():
        return _parse_fast_rests(keys, rests, [], len(text), check_surrogates=False)
    wide_indexes = [index for index, rest in enumerate(rests) if not rest.isascii()]
    if utf8_as_latin1:
        try:
            if not all(map(str.isascii, keys)):
                keys = "\n".join(keys).encode("latin-1").decode("utf-8").split("\n")
            for index in wide_indexes:
                rests[index] = rests[index].encode("latin-1").decode("utf-8")
        except UnicodeDecodeError:
            return None
    check_surrogates = data is None and not utf8_as_latin1  # else decoded from UTF-8
    return _parse_fast_rests(
        keys, rests, wide_indexes, len(text), check_surrogates=check_surrogates
    )


def _parse_fast_bytes(data: bytes) -> dict[str, str] | None:
    if b"\\" not in data or data.isascii():
        try:
            return _parse_fast(data.decode("utf-8"), data=data)
        except UnicodeDecodeError:
            return None
    return _parse_fast(data.decode("latin-1"), utf8_as_latin1=True)


def _parse_fast_plain(text: str, data: bytes | None) -> dict[str, str] | None:
    """No backslash anywhere: every double quote is structural, so splitting on it gives
    ``key=``, ``body``, ``<newline>key=``, ``body``, ..., ``""``. ``data``: the UTF-8 bytes
    of ``text``, if at hand."""
    checked: str | bytes = text
    if not text.isascii():
        if data is None:
            try:
                data = text.encode("utf-8")  # fails on lone surrogates (only in a str argument)
            except UnicodeEncodeError:
                return None
        # In UTF-8 the bytes of control characters stand for them alone, and bytes are
        # searched faster than a wide string.
        checked = data
    if _has_control_but_newline(checked):
        return None
    parts = text.split('"')
    count = len(parts) // 2
    if not count or len(parts) % 2 == 0 or parts[-1]:
        return None
    heads = parts[0:-1:2]  # "key1=", "\nkey2=", ..., "\nkeyN="
    bodies = parts[1::2]
    if not heads[-1].endswith("="):
        return None
    # NUL cannot be in the text (raw control), so it marks the head boundaries: splitting
    # on "=<NUL>\n" gives `count` pieces only if every head but the first starts with "\n"
    # and every head ends with "=".
    keys = "\x00".join(heads)[:-1].split("=\x00\n")
    if len(keys) != count or not all(keys):
        return None
    # Each head but the first holds one newline, before its key: any other newline is in
    # a key or a value, which the kubelet would have escaped.
    if "=" in "".join(keys) or text.count("\n") != count - 1:
        return None
    result = dict(zip(keys, bodies, strict=True))
    return result if len(result) == count else None


def _has_control_but_newline(text: str | bytes) -> bool:
    """Whether ``text`` (``str`` only if ASCII) has a raw control character other than the
    newline, or DEL. A short text is copied without all other bytes; in a long one each of
    the 32 is searched for (memchr): faster than one pass of a regular expression or of
    ``bytes.translate`` over more than a few kilobytes, and no copy."""
    if len(text) < _SEARCH_FROM:
        data = text.encode("ascii") if isinstance(text, str) else text
        controls = data.translate(None, _NOT_CONTROL_BYTES)
        return controls.count(b"\n") != len(controls)
    if isinstance(text, str):
        return any(map(text.__contains__, _CONTROL_CHARS))
    return any(map(text.__contains__, _CONTROL_CODES))


def _has_raw_control(text: str) -> bool:
    """True if ``text`` has a character below U+0020 (JSON's C string scanner rejects
    exactly those, at memory speed). A double quote or backslash in ``text`` also gives
    True, conservatively."""
    if '"' in text or "\\" in text:
        return True
    try:
        _scanstring(text + '"', 0, True)
    except ValueError:
        return True
    return False


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-32-le")  # the fastest encoder that refuses lone surrogates
    except UnicodeEncodeError:
        return True
    return False


def _parse_fast_rests(
    keys: Sequence[str],
    rests: list[str],
    wide_indexes: list[int],
    size: int,
    *,
    check_surrogates: bool,
) -> dict[str, str] | None:
    """Backslashes present; ``keys`` and ``rests`` (each value after its opening quote)
    come from the lines, ``wide_indexes`` are those of the values with non-ASCII characters,
    ``size`` is the length of the text. Values are sorted three ways:

    * ASCII values whose escapes JSON reads exactly as Go does (the common ``\\" \\n \\t
      \\\\``, or no escape at all) are decoded by JSON's C scanner, a JSON array of them
      at a time (see _decode_json_pieces);
    * non-ASCII values with such escapes only, the same way in arrays of their own (joined
      with ASCII text they would widen a whole array to two or four bytes a character), or
      one by one by JSON's C string scanner when there are only a few;
    * values with other escapes are checked and decoded together by ``_decode_go_rests``.
    """
    all_keys = "".join(keys)
    if "=" in all_keys or _has_raw_control(all_keys):
        return None
    # Lone surrogates (only in a str argument) have no UTF-8 form. _decode_go_rests refuses
    # them; JSON's scanner does not, so the keys and the values it decodes are checked.
    if check_surrogates and not all_keys.isascii() and _has_surrogate(all_keys):
        return None
    if not all(map(str.endswith, rests, _REPEAT_QUOTE)):
        return None  # e.g. a space after the closing quote, which JSON would skip
    narrow = rests
    if wide_indexes:
        narrow = list(rests)
        for index in wide_indexes:
            narrow[index] = '"'  # an empty string in the array
    decoded = _decode_json_pieces(narrow, size)
    if decoded is None:
        return None
    values, go_indexes = decoded
    json_indexes = []  # of non-ASCII values with the escapes JSON shares with Go, if any
    for index in wide_indexes:
        rest = rests[index]
        if "\\" in rest and _GO_ESCAPE_RE.search(rest) is not None:
            go_indexes.append(index)
        else:
            json_indexes.append(index)
    if len(json_indexes) <= _FEW:  # one by one: less work than setting up an array
        for index in json_indexes:
            rest = rests[index]
            if check_surrogates and _has_surrogate(rest):  # lone surrogates: see above
                return None
            try:
                values[index], end = _scanstring(rest, 0, True)
            except ValueError:
                return None
            if end != len(rest):
                return None  # a raw quote before the end
    else:
        json_rests = list(map(rests.__getitem__, json_indexes))
        for start, stop in _chunks(json_rests):
            part = _scan_array(_json_array(json_rests[start:stop]), stop - start)
            if part is None or (check_surrogates and _has_surrogate("".join(part))):
                return None
            for index, value in zip(json_indexes[start:stop], part, strict=True):
                values[index] = value
    if go_indexes:
        go_rests = list(map(rests.__getitem__, go_indexes))
        for start, stop in _chunks(go_rests):
            go_values = _decode_go_rests(go_rests[start:stop])
            if go_values is None:
                return None
            for index, value in zip(go_indexes[start:stop], go_values, strict=True):
                values[index] = value
    result = dict(zip(keys, values, strict=True))
    return result if len(result) == len(keys) else None


_CHUNK = 32768  # characters of values parsed by one call
_FEW = 4  # non-ASCII values decoded one by one rather than in an array


def _chunks(texts: Sequence[str], size: int | None = None) -> list[tuple[int, int]]:
    """Split ``texts`` into ranges ``(start, stop)`` of about ``_CHUNK`` characters (at most:
    ``size``, if given, is their length in all or more)."""
    count = len(texts)
    if size is None:
        size = sum(map(len, texts))
    if size <= _CHUNK:
        return [(0, count)]
    step = max(1, count * _CHUNK // size)
    return [(start, min(start + step, count)) for start in range(0, count, step)]


def _decode_json_pieces(pieces: list[str], size: int) -> tuple[list[str], list[int]] | None:
    """Decode ``pieces`` (ASCII values after their opening quote, each ending with its
    closing quote, none holding a raw newline; ``size`` characters at most in all) with
    JSON's C scanner, a JSON array of about ``_CHUNK`` characters at a time; None if one is
    not a well-formed JSON string. Pieces with an escape JSON does not read as Go does are
    left out: their values are empty strings and their indexes are returned, to be decoded
    otherwise.

    Why an array is exact: its elements are joined by ``,`` and a raw newline, which JSON
    allows between values but (strict mode) never inside a string, and no piece holds a raw
    newline. So no string can run across a joint. If the array holds only strings (raw
    quotes in the pieces could make it hold numbers, or arrays and objects spanning several
    pieces), each piece ``"<value>"`` starts one, where a value is expected. Getting
    exactly as many strings as pieces then means each piece yielded one; as each piece ends
    with a double quote, which is not JSON whitespace, that string ends at the piece's
    closing quote: no value has a raw quote or ends in a backslash that escapes its closing
    quote. (A temporary string of hundreds of kilobytes would cost more in page faults than
    its parsing: hence the chunks.)
    """
    values: list[str] = []
    go_indexes: list[int] = []
    for start, stop in _chunks(pieces, size):
        chunk = pieces[start:stop]
        array = _json_array(chunk)
        found = _go_pieces(array, chunk)
        if found:
            array = _json_array(chunk)  # without them
            go_indexes += map(start.__add__, found)
        part = _scan_array(array, len(chunk))
        if part is None:
            return None
        values += part
    return values, go_indexes


def _scan_array(array: str, count: int) -> list[str] | None:
    """The ``count`` strings of ``array``, a JSON array made by ``_json_array`` (see
    _decode_json_pieces), or None if it holds anything else."""
    part: list[str]
    try:
        part, end = _scan_json(array, 0)
    except (ValueError, StopIteration):  # StopIteration: no JSON value where one must be
        return None
    if len(part) != count or end != len(array):
        return None
    try:
        "".join(part)  # fails unless all are strings (the fastest check)
    except TypeError:
        return None
    return part


def _json_array(pieces: list[str]) -> str:
    """``["`` + the pieces joined by ``,<newline>"`` + ``]``, copying the text only once."""
    first, last = pieces[0], pieces[-1]
    pieces[0] = '["' + first
    pieces[-1] = pieces[-1] + "]"
    array = ',\n"'.join(pieces)
    pieces[0], pieces[-1] = first, last
    return array


def _go_pieces(array: str, pieces: list[str]) -> list[int]:
    """Find the pieces with an escape JSON does not read as Go does, blank them (``'"'``,
    an empty string) and return their indexes. One search runs through ``array``, the
    JSON array of the pieces, resuming after each piece found."""
    position = _find_go_escape(array, 0)
    found: list[int] = []
    starts: list[int] = []
    while position >= 0:
        if not starts:  # where each piece starts in the array
            lengths = itertools.accumulate(map(len, pieces), initial=0)
            starts = list(map(operator.add, lengths, range(2, 3 * len(pieces) + 5, 3)))
        index = bisect.bisect_right(starts, position) - 1
        found.append(index)
        pieces[index] = '"'
        position = _find_go_escape(array, starts[index + 1])
    return found


def _find_go_escape(text: str, start: int) -> int:
    """Position of the first escape from ``start`` on that JSON does not read as Go does, or
    -1. Hits of the regex that follow an escaped backslash (an odd run of backslashes) are
    skipped."""
    search = _NOT_JSON_ESCAPE_RE.search
    while (match := search(text, start)) is not None:
        position = match.start()
        before = position - 1
        while before >= 0 and text[before] == "\\":
            before -= 1
        if (position - 1 - before) % 2 == 0:
            return position
        start = position + 1
    return -1


def _decode_go_rests(rests: list[str]) -> list[str] | None:
    """Decode quoted values (without their opening quote) that use escapes JSON does not
    read as Go does. All at once: one regex validates them, one codec call decodes them."""
    blob = _SEPARATOR.join(rests)
    if _CODE_POINT_REST_LIST_RE.fullmatch(blob) is not None:
        # Well-formed, and every escape names a valid code point or is a \U beyond U+10FFFF
        # (which the codec rejects): see _decode_body.
        try:
            decoded = blob.encode("latin-1", "backslashreplace").decode("unicode_escape")
        except UnicodeDecodeError:
            return None
        values = decoded.split('"' + _SEPARATOR)
        if len(values) == len(rests):  # else an escape produced the separator
            values[-1] = values[-1][:-1]
            return values
    # Byte escapes, surrogates or malformed values: one by one, exactly.
    values = []
    for rest in rests:
        try:
            values.append(_parse_value('"' + rest))
        except _Problem:
            return None
    return values


# --------------------------------------------------------------------------------------------
# Rendering

_QUOTE_SPECIAL_RE = re.compile(r'["\\\x00-\x1f\x7f-\x9f]')
_QUOTE_SPLIT_RE = re.compile(r'(["\\\x00-\x1f\x7f-\x9f])')
_CHAR_QUOTED: dict[str, str] = {
    '"': '\\"',
    "\\": "\\\\",
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}
_BAD_KEY_RE = re.compile(r"[=\x00-\x1f\x7f\ud800-\udfff]")


#: The Unicode version of Go's printability table that :func:`quote` and :func:`format_map`
#: use by default: Go 1.21 to 1.26 (the releases kubelets in service are built with) have
#: Unicode 15.0.0 tables. ``"17.0.0"`` renders as Go 1.27 and later; ``"13.0.0"`` as Go
#: 1.16 to 1.20.
GO_UNICODE_VERSION = "15.0.0"


@functools.cache
def _go_not_printable(unicode_version: str) -> re.Pattern[str]:
    """A pattern matching any character Go's ``strconv.IsPrint`` does not accept."""
    try:
        table = TABLES[unicode_version]
    except KeyError:
        known = ", ".join(sorted(TABLES))
        raise ValueError(
            f"no Go printability table for Unicode {unicode_version} (there are: {known})"
        ) from None
    parts = []
    end = 0
    for pair in table.split(","):
        gap, length = pair.split("+")
        start = end + int(gap, 36)
        end = start + int(length, 36)
        parts.append(f"{re.escape(chr(start))}-{re.escape(chr(end))}")
    return re.compile(f"[^{''.join(parts)}]")


def go_printable(text: str, unicode_version: str = GO_UNICODE_VERSION) -> bool:
    """Whether Go's ``strconv.IsPrint`` accepts every character of ``text``: Unicode letters,
    marks, numbers, punctuation, symbols and the ASCII space, per the tables of the Go
    release with ``unicode_version`` (not Python's own Unicode version).

    >>> go_printable("café ☕"), go_printable("\u200b")
    (True, False)
    >>> go_printable("\U0001fae8"), go_printable("\U0001fae8", "13.0.0")  # Unicode 15 emoji
    (True, False)
    """
    if text.isascii():
        return text.isprintable()  # ASCII is the same in every version
    return _go_not_printable(unicode_version).search(text) is None


def _quote_char(char: str, unicode_version: str) -> str:
    quoted = _CHAR_QUOTED.get(char)
    if quoted is not None:
        return quoted
    if go_printable(char, unicode_version):
        return char
    code = ord(char)
    if 0xD800 <= code <= 0xDFFF:
        raise ValueError(
            "value contains a lone surrogate (U+D800..U+DFFF), which is not valid in UTF-8"
        )
    if code < 0x20 or code == 0x7F:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _quote_chunk(chunk: str, unicode_version: str) -> str:
    if go_printable(chunk, unicode_version):
        return chunk
    # Only the characters the table rejects go through _quote_char, one regex pass.
    return _go_not_printable(unicode_version).sub(
        lambda match: _quote_char(match.group(), unicode_version), chunk
    )


def quote(value: str, *, unicode_version: str = GO_UNICODE_VERSION) -> str:
    """Quote ``value`` exactly as Go's ``strconv.Quote`` (and ``fmt``'s ``%q``) does.

    ``"`` and ``\\`` are escaped; printable characters (Unicode letters, marks, numbers,
    punctuation, symbols and the ASCII space, per :func:`go_printable`: Go's tables for
    ``unicode_version``, whatever Python's own Unicode version) are kept; others become
    ``\\a \\b \\f \\n \\r \\t \\v``, ``\\xHH`` (below 0x20 and 0x7f), ``\\uHHHH`` or
    ``\\UHHHHHHHH``, in lowercase hex. A lone surrogate raises :class:`ValueError`: it has
    no UTF-8 form, so no kubelet can have written it.

    >>> print(quote('say "hi"\\n\\u200b'))
    "say \\"hi\\"\\n\\u200b"
    """
    if go_printable(value, unicode_version) and _QUOTE_SPECIAL_RE.search(value) is None:
        return f'"{value}"'
    parts = _QUOTE_SPLIT_RE.split(value)
    # Odd indexes hold the single special characters, even indexes the text between them.
    for index, part in enumerate(parts):
        if part:
            if index % 2:
                parts[index] = _quote_char(part, unicode_version)
            else:
                parts[index] = _quote_chunk(part, unicode_version)
    return '"' + "".join(parts) + '"'


def format_map(mapping: Mapping[str, str], *, unicode_version: str = GO_UNICODE_VERSION) -> str:
    """Render ``mapping`` byte for byte as the kubelet writes a label or annotation file.

    Keys sorted, one ``key="value"`` line each (value quoted by :func:`quote`), lines joined
    by ``"\\n"``, no trailing newline; an empty mapping gives an empty string. Raises
    :class:`ValueError` for a key that could not be read back (empty, or containing ``=``,
    a control character or a lone surrogate) and for a value with a lone surrogate.
    ``unicode_version`` picks the Go printability table (see :data:`GO_UNICODE_VERSION`).

    >>> print(format_map({'role': 'canary', 'app': 'shop', 'note': 'a\\tb'}))
    app="shop"
    note="a\\tb"
    role="canary"
    """
    lines = []
    for key in sorted(mapping):
        if not key or _BAD_KEY_RE.search(key) is not None:
            raise ValueError(
                f"key {key!r} cannot be written: empty, or has '=', a control character "
                "or a lone surrogate"
            )
        try:
            lines.append(f"{key}={quote(mapping[key], unicode_version=unicode_version)}")
        except ValueError as exc:
            raise ValueError(f"key {key!r}: {exc}") from None
    return "\n".join(lines)
