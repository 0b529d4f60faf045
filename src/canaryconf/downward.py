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
newline. Malformed input raises :class:`~canaryconf._errors.DownwardAPIFormatError`, a
:class:`ValueError`, naming the source, the 1-based line and the key when known, and never any
part of a value: values can be secrets.

This module is a low layer: it depends on the standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from canaryconf._errors import DownwardAPIFormatError

__all__ = ["DownwardAPIFormatError", "format_map", "parse_map", "quote", "unquote"]

# --------------------------------------------------------------------------------------------
# Grammar. A value character is anything but a quote, a backslash, a raw control character
# or a lone surrogate (the latter only reachable through a ``str`` argument).
_VALUE_CHAR = r'[^"\\\x00-\x1f\x7f\ud800-\udfff]'
_ESCAPE = r'\\(?:[abfnrtv\\"]|x[0-9a-fA-F]{2}|[0-3][0-7]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8})'
_BODY = rf"{_VALUE_CHAR}*(?:{_ESCAPE}{_VALUE_CHAR}*)*"
_KEY = r"[^=\n\x00-\x1f\x7f\ud800-\udfff]+"

# One whole, well-formed line (``re.M``: anchored at line start and line end, so a match never
# spans lines and a line holds at most one match).
_LINE_RE = re.compile(rf'^({_KEY})="({_BODY})"\r?$', re.M)
# A quoted value, whole and well-formed.
_QUOTED_RE = re.compile(rf'"({_BODY})"')
_RAW_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")
# A possible byte escape >= 0x80 (may also hit a literal "x80" after an escaped backslash,
# which only sends the value down the slower, exact path).
_HIGH_BYTE_ESCAPE_RE = re.compile(r"\\(?:x[89a-fA-F][0-9a-fA-F]|[23][0-7]{2})")
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


class _Problem(Exception):
    """Internal: a value is malformed; ``column`` is 0-based within the quoted text."""

    def __init__(self, reason: str, column: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.column = column


# --------------------------------------------------------------------------------------------
# Decoding


def _go_utf8_decode(data: bytes) -> str:
    """Decode like Go does when it turns bytes into runes: each byte that does not start a
    valid UTF-8 sequence becomes one U+FFFD (``utf8.DecodeRune`` returns width 1)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    parts: list[str] = []
    pos = 0
    end = len(data)
    while pos < end:
        try:
            parts.append(data[pos:].decode("utf-8"))
            break
        except UnicodeDecodeError as exc:
            bad = pos + exc.start
            parts.append(data[pos:bad].decode("utf-8"))
            parts.append("\ufffd")
            pos = bad + 1
    return "".join(parts)


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
    if _HIGH_BYTE_ESCAPE_RE.search(body) is None:
        # No byte escape >= 0x80, so every escape names a code point: Python's unicode_escape
        # codec decodes exactly Go's (already validated) escapes. Literal characters above
        # U+00FF are turned into \u/\U escapes by backslashreplace and come back unchanged.
        try:
            text = body.encode("latin-1", "backslashreplace").decode("unicode_escape")
        except UnicodeDecodeError:  # a \U escape beyond U+10FFFF
            raise _locate_bad_rune(body) from None
        if _SURROGATE_RE.search(text) is not None:
            raise _locate_bad_rune(body)
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
    if key is not None and key.startswith("\ufeff") and line_start == 0:
        key = key[1:]
    column = len(data[line_start:bad].decode("utf-8")) + 1
    raise _line_error(
        f"invalid UTF-8 (column {column})", source, data.count(b"\n", 0, bad) + 1, key
    )


def _parse_slow(text: str, source: str | None) -> dict[str, str]:
    """Line-by-line parse with exact error reporting; also used for the rare values with byte
    escapes above 0x7f."""
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
    canaryconf._errors.DownwardAPIFormatError: labels, line 1, key 'app': value does not start \
with a double quote right after '='
    """
    if not isinstance(text, str):
        text = _decode_bytes(bytes(text), source)
    if text.startswith("\ufeff"):
        text = text[1:]
    end = len(text)
    if text.endswith("\n"):
        end -= 1
    if end == 0 or text == "\r\n":
        return {}
    # Fast path: one regex validates and splits every line at C speed.
    pairs: list[tuple[str, str]] = _LINE_RE.findall(text, 0, end)
    if len(pairs) != text.count("\n", 0, end) + 1:
        return _parse_slow(text[:end], source)
    result = dict(pairs)
    if len(result) != len(pairs):
        return _parse_slow(text[:end], source)  # duplicate key: report it
    if "\\" in text:
        try:
            for key, body in pairs:
                if "\\" in body:
                    result[key] = _decode_body(body)
        except _Problem:
            return _parse_slow(text[:end], source)
    return result


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


def _quote_char(char: str) -> str:
    quoted = _CHAR_QUOTED.get(char)
    if quoted is not None:
        return quoted
    if char.isprintable():
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


def _quote_chunk(chunk: str) -> str:
    if chunk.isprintable():
        return chunk
    return "".join(map(_quote_char, chunk))


def quote(value: str) -> str:
    """Quote ``value`` exactly as Go's ``strconv.Quote`` (and ``fmt``'s ``%q``) does.

    ``"`` and ``\\`` are escaped; printable characters (Unicode letters, marks, numbers,
    punctuation, symbols and the ASCII space, per ``str.isprintable()``) are kept; others
    become ``\\a \\b \\f \\n \\r \\t \\v``, ``\\xHH`` (below 0x20 and 0x7f), ``\\uHHHH`` or
    ``\\UHHHHHHHH``, in lowercase hex. A lone surrogate raises :class:`ValueError`: it has
    no UTF-8 form, so no kubelet can have written it.

    >>> print(quote('say "hi"\\n\\u200b'))
    "say \\"hi\\"\\n\\u200b"
    """
    if value.isprintable() and _QUOTE_SPECIAL_RE.search(value) is None:
        return f'"{value}"'
    parts = _QUOTE_SPLIT_RE.split(value)
    # Odd indexes hold the single special characters, even indexes the text between them.
    for index, part in enumerate(parts):
        if part:
            parts[index] = _quote_char(part) if index % 2 else _quote_chunk(part)
    return '"' + "".join(parts) + '"'


def format_map(mapping: Mapping[str, str]) -> str:
    """Render ``mapping`` byte for byte as the kubelet writes a label or annotation file.

    Keys sorted, one ``key="value"`` line each (value quoted by :func:`quote`), lines joined
    by ``"\\n"``, no trailing newline; an empty mapping gives an empty string. Raises
    :class:`ValueError` for a key that could not be read back (empty, or containing ``=``,
    a control character or a lone surrogate) and for a value with a lone surrogate.

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
            lines.append(f"{key}={quote(mapping[key])}")
        except ValueError as exc:
            raise ValueError(f"key {key!r}: {exc}") from None
    return "\n".join(lines)
