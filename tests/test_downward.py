"""Tests of canaryconf.downward: the label/annotation file format of a downwardAPI volume."""

from __future__ import annotations

import ast
import contextlib
import doctest
import gc
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from canaryconf import downward
from canaryconf._errors import DownwardAPIFormatError
from canaryconf.downward import format_map, parse_map, quote, unquote

# Rendered by Go 1.19's fmt %q (Unicode 13.0.0 printability tables); see tests/data/README.md.
VECTORS = Path(__file__).resolve().parent / "data" / "downward-maps.jsonl"


# --------------------------------------------------------------------------------------------
# Go-rendered vectors (tests/data/downward-maps.jsonl)


def _vectors() -> Iterator[tuple[int, str, dict[str, str]]]:
    with VECTORS.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if line.strip():
                vector = json.loads(line)
                yield number, vector["file"], vector["map"]


def test_go_vectors_parse_and_render_exactly() -> None:
    count = 0
    for number, file, mapping in _vectors():
        assert parse_map(file, source=f"vector {number}") == mapping, f"vector line {number}"
        assert parse_map(file.encode("utf-8")) == mapping, f"vector line {number} (bytes)"
        # The vectors were rendered by Go 1.19: its tables are Unicode 13.0.0.
        assert format_map(mapping, unicode_version="13.0.0") == file, f"vector line {number}"
        count += 1
    assert count >= 100, f"only {count} vectors in {VECTORS}"


def test_go_vectors_keep_key_order_of_the_file() -> None:
    for _number, file, mapping in _vectors():
        assert list(parse_map(file)) == sorted(mapping)


# --------------------------------------------------------------------------------------------
# A reference reader, written independently of the module and as plainly as possible:
# Go's strconv.Unquote one character at a time, plus this module's line rules.


class _Bad(Exception):
    def __init__(self, line: int, key: str | None) -> None:
        super().__init__(line, key)
        self.line = line
        self.key = key


_SIMPLE = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, '"': 34}
_HEX = "0123456789abcdefABCDEF"


def _go_decode(data: bytes) -> str:
    """Bytes to str as Go ranges over a string: each invalid byte is one U+FFFD."""
    out = []
    i = 0
    while i < len(data):
        for width in (1, 2, 3, 4):
            try:
                out.append(data[i : i + width].decode("utf-8"))
            except UnicodeDecodeError:
                continue
            i += width
            break
        else:
            out.append("\ufffd")
            i += 1
    return "".join(out)


def _reference_unquote(quoted: str) -> str | None:
    """Go's strconv.Unquote for a double-quoted string, minus raw control characters; None
    when invalid."""
    if len(quoted) < 2 or quoted[0] != '"' or quoted[-1] != '"':
        return None
    body = quoted[1:-1]
    out = bytearray()
    i = 0
    while i < len(body):
        char = body[i]
        if char == '"' or ord(char) < 0x20 or ord(char) == 0x7F or 0xD800 <= ord(char) < 0xE000:
            return None
        if char != "\\":
            out += char.encode("utf-8")
            i += 1
            continue
        if i + 1 >= len(body):
            return None
        kind = body[i + 1]
        if kind in _SIMPLE:
            out.append(_SIMPLE[kind])
            i += 2
        elif kind in "xuU":
            size = {"x": 2, "u": 4, "U": 8}[kind]
            digits = body[i + 2 : i + 2 + size]
            if len(digits) != size or any(d not in _HEX for d in digits):
                return None
            value = int(digits, 16)
            if kind == "x":
                out.append(value)
            elif value > 0x10FFFF or 0xD800 <= value < 0xE000:
                return None
            else:
                out += chr(value).encode("utf-8")
            i += 2 + size
        elif kind in "01234567":
            digits = body[i + 1 : i + 4]
            if len(digits) != 3 or any(d not in "01234567" for d in digits):
                return None
            value = int(digits, 8)
            if value > 255:
                return None
            out.append(value)
            i += 4
        else:
            return None
    return _go_decode(bytes(out))


def _reference_parse(text: str) -> dict[str, str]:
    text = text.removeprefix("\ufeff")
    if text.endswith("\n"):
        text = text[:-1].removesuffix("\r")
    if not text:
        return {}
    result: dict[str, str] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")  # noqa: PLW2901
        key, equals, quoted = line.partition("=")
        if not equals or not key:
            raise _Bad(number, None)
        if any(ord(c) < 0x20 or ord(c) == 0x7F or 0xD800 <= ord(c) < 0xE000 for c in key):
            raise _Bad(number, None)
        value = _reference_unquote(quoted)
        if value is None or key in result:
            raise _Bad(number, key)
        result[key] = value
    return result


# --------------------------------------------------------------------------------------------
# Property tests

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?"
_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
qualified_names = st.builds(
    lambda prefix, name: f"{prefix}/{name}" if prefix else name,
    st.none() | st.from_regex(rf"{_DNS_LABEL}(\.{_DNS_LABEL}){{0,3}}", fullmatch=True),
    st.from_regex(_NAME, fullmatch=True),
)
any_text = st.text(st.characters(exclude_categories=("Cs",)))
# Characters that exercise the escapes and every shortcut of the parser.
_TRICKY = list("\"\\=#\n\r\t\x00\x1b\x7f\x85 é数😀\u200b\u2028\ufeff\U000e0001xuU07avb/'{}[],:")
tricky_text = st.text(st.sampled_from(_TRICKY) | st.characters(exclude_categories=("Cs",)))
values = any_text | tricky_text
maps = st.dictionaries(qualified_names, values, max_size=12)


@given(maps)
def test_parse_inverts_format(mapping: dict[str, str]) -> None:
    file = format_map(mapping)
    assert parse_map(file) == mapping
    assert parse_map(file.encode("utf-8")) == mapping


@given(maps)
def test_rendered_file_renders_again_identically(mapping: dict[str, str]) -> None:
    file = format_map(mapping)
    assert format_map(parse_map(file)) == file
    assert format_map(parse_map(file.encode("utf-8"))) == file


@given(maps)
def test_trailing_newline_and_crlf_are_accepted(mapping: dict[str, str]) -> None:
    file = format_map(mapping)
    crlf = file.replace("\n", "\r\n")  # values never hold a raw newline
    for variant in (file + "\n", crlf, crlf + "\r\n"):
        assert parse_map(variant) == mapping
        assert parse_map(variant.encode("utf-8")) == mapping


@given(maps)
def test_file_layout_is_the_kubelets(mapping: dict[str, str]) -> None:
    file = format_map(mapping)
    lines = file.split("\n") if file else []
    assert [line.partition("=")[0] for line in lines] == sorted(mapping)
    assert all(line.partition("=")[2] == quote(mapping[line.partition("=")[0]]) for line in lines)
    assert not file.endswith("\n")


@st.composite
def mangled_files(draw: st.DrawFn) -> str:
    """A rendered file with a few characters inserted, deleted or replaced."""
    text = format_map(draw(maps))
    for _ in range(draw(st.integers(0, 4))):
        position = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        char = draw(st.sampled_from([*_TRICKY, "\\x", "\\u", "\\U00", "\\8", "\\400", "\ud800"]))
        if action == "insert":
            text = text[:position] + char + text[position:]
        elif action == "delete":
            text = text[:position] + text[position + 1 :]
        else:
            text = text[:position] + char + text[position + 1 :]
    return text


def _check_against_reference(text: str) -> None:
    """parse_map, on ``text`` and on its UTF-8 bytes, returns what the reference reader
    returns, or raises for the same line and key."""
    _check_form_against_reference(text, text)
    # bytes go through their own fast path; a str with a lone surrogate has no bytes form.
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        return
    _check_form_against_reference(text, data)


def _check_form_against_reference(text: str, form: str | bytes) -> None:
    """parse_map, on ``form`` (``text`` or its bytes), returns what the reference reader
    returns for ``text``, or raises for the same line and key."""
    try:
        expected = _reference_parse(text)
    except _Bad as bad:
        with pytest.raises(DownwardAPIFormatError) as info:
            parse_map(form, source="f")
        assert (info.value.line, info.value.key) == (bad.line, bad.key)
    else:
        assert parse_map(form) == expected


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(mangled_files())
def test_parser_agrees_with_the_reference_reader(text: str) -> None:
    _check_against_reference(text)


# Pieces of lines, valid and not, for files assembled at random.
_FRAGMENTS = [
    *("a", "k", "x/y", "=", '"', "\\", '\\"', "\\\\", "\\n", "\\t", "\\x41", "\\xc3", "\\xa9"),
    *("\\xff", "\\u00e9", "\\ud800", "\\U0001f600", "\\U00110000", "\\101", "\\400", "\\a"),
    *("\\v", "\\/", "\\'", "\\q", " ", "\t", "\r", "\n", "\x00", "\x7f", "é", "😀", "\u200b"),
    *("{", "}", ",", ":", "[", "]", "\\u12", "\\x4", "\\U0000d800", "word", '""', '="', '"\n'),
]
_BODY_FRAGMENTS = [*_FRAGMENTS[9:20], "word", " ", "é", "😀", "{", "}", ","]


@st.composite
def assembled_files(draw: st.DrawFn) -> str:
    """Lines of key="body" with bodies made of escapes and text, some of them broken by a
    fragment, and lines of fragments; joined by LF or CRLF, maybe with a trailing end."""
    lines = []
    for _ in range(draw(st.integers(0, 8))):
        if draw(st.booleans()) or draw(st.booleans()):
            key = draw(st.sampled_from(["a", "b", "k", "x/y", "z"])) + str(draw(st.integers(0, 3)))
            body = "".join(draw(st.lists(st.sampled_from(_BODY_FRAGMENTS), max_size=6)))
            line = f'{key}="{body}"'
            if draw(st.booleans()):
                position = draw(st.integers(0, len(line)))
                cut = draw(st.integers(0, 1))
                line = line[:position] + draw(st.sampled_from(_FRAGMENTS)) + line[position + cut :]
        else:
            line = "".join(draw(st.lists(st.sampled_from(_FRAGMENTS), max_size=8)))
        lines.append(line)
    text = draw(st.sampled_from(["\n", "\r\n"])).join(lines)
    return text + draw(st.sampled_from(["", "", "\n", "\r\n", "\r", " "]))


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(assembled_files())
def test_parser_agrees_with_the_reference_reader_on_assembled_files(text: str) -> None:
    _check_against_reference(text)


@contextlib.contextmanager
def _chunk_size(characters: int) -> Iterator[None]:
    """The fast paths parse values in chunks of about ``downward._CHUNK`` characters; a
    tiny chunk puts the boundaries of chunks between the few lines of a generated file."""
    saved = downward._CHUNK
    downward._CHUNK = characters
    try:
        yield
    finally:
        downward._CHUNK = saved


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(mangled_files(), assembled_files()), st.sampled_from([1, 7, 40]))
def test_parser_agrees_with_the_reference_reader_across_chunks(text: str, chunk: int) -> None:
    with _chunk_size(chunk):
        _check_against_reference(text)


# --------------------------------------------------------------------------------------------
# The fast paths against the exact line-by-line parser (downward._parse_slow)


def _exact(text: str) -> dict[str, str] | DownwardAPIFormatError:
    """What the exact parser makes of ``text`` after parse_map's normalisation (byte order
    mark, one trailing newline): a map or its error."""
    text = text.removeprefix("\ufeff")
    if text.endswith("\n"):
        text = text[:-1].removesuffix("\r")
    if not text:
        return {}
    try:
        return downward._parse_slow(text, "f")
    except DownwardAPIFormatError as exc:
        return exc


def _check_fast_against_exact(text: str) -> None:
    """The fast paths, given ``text`` and its UTF-8 bytes, either decline (None: the exact
    parser then decides) or return exactly what the exact parser returns; so parse_map
    returns that too, or raises the exact parser's very error."""
    expected = _exact(text)
    body = text.removeprefix("\ufeff")
    if body.endswith("\n"):
        body = body[:-1].removesuffix("\r")
    forms: list[str | bytes] = [text]
    fast = [downward._parse_fast(body)] if body else []
    with contextlib.suppress(UnicodeEncodeError):  # a lone surrogate: no bytes form
        forms.append(text.encode("utf-8"))
        if body:
            fast.append(downward._parse_fast_bytes(body.encode("utf-8")))
    for result in fast:
        assert result is None or result == expected
    for form in forms:
        if isinstance(expected, dict):
            assert parse_map(form, source="f") == expected
        else:
            with pytest.raises(DownwardAPIFormatError) as info:
                parse_map(form, source="f")
            assert (str(info.value), info.value.line, info.value.key) == (
                str(expected),
                expected.line,
                expected.key,
            )


def _vector_files() -> list[str]:
    return [file for _number, file, _mapping in _vectors()]


@st.composite
def mangled_vectors(draw: st.DrawFn) -> str:
    """A Go-rendered vector with a few characters inserted, deleted or replaced."""
    text = draw(st.sampled_from(_vector_files()))
    for _ in range(draw(st.integers(1, 3))):
        position = draw(st.integers(0, len(text)))
        char = draw(st.sampled_from([*_TRICKY, "\\x", "\\u", "\\U00", "\\8", "\\400", "\ud800"]))
        cut = draw(st.integers(0, 1))
        text = text[:position] + char + text[position + cut :]
    return text


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(maps.map(format_map), mangled_files(), assembled_files(), mangled_vectors()),
    st.sampled_from([None, 1, 7, 40]),
)
def test_fast_paths_agree_with_the_exact_parser(text: str, chunk: int | None) -> None:
    with _chunk_size(chunk) if chunk else contextlib.nullcontext():
        _check_fast_against_exact(text)


@pytest.mark.parametrize("chunk", [None, 7])
def test_fast_paths_agree_with_the_exact_parser_on_the_vectors(chunk: int | None) -> None:
    with _chunk_size(chunk) if chunk else contextlib.nullcontext():
        for file in _vector_files():
            _check_fast_against_exact(file)
            _check_fast_against_exact(file.replace("\n", "\r\n") + "\n")


@given(maps)
def test_fast_paths_take_every_rendered_map(mapping: dict[str, str]) -> None:
    """No well-formed file needs the exact parser (whose agreement above would otherwise
    prove little, and which is several times slower)."""
    file = format_map(mapping)
    if file:
        assert downward._parse_fast(file) == mapping
        assert downward._parse_fast_bytes(file.encode("utf-8")) == mapping


def test_fast_paths_take_every_vector() -> None:
    for _number, file, mapping in _vectors():
        if file:
            assert downward._parse_fast(file) == mapping
            assert downward._parse_fast_bytes(file.encode("utf-8")) == mapping


def _big_map(size: int) -> dict[str, str]:
    """About ``size`` characters of plain values, JSON documents (\\" and \\n), text with
    non-ASCII characters and values with escapes JSON lacks (with and without non-ASCII
    characters), interleaved."""
    kinds = [
        lambda i: f"https://example.com/{i}?q=" + "x" * (i % 50),
        lambda i: (
            json.dumps({"name": f"shop-{i}", "tags": ["a", "b"], "ratio": i / 7}, indent=1) + "\n"
        ),
        lambda i: f'café {i} 数据 "quoted" \\ tab\t 😀',
        lambda i: f"bell\a vt\v esc\x1b del\x7f nbsp\xa0 zwsp\u200b tag\U000e0001 {i}",
        lambda i: f"ASCII only: bell\a vt\v esc\x1b del\x7f {i}",
    ]
    mapping: dict[str, str] = {}
    total = 0
    index = 0
    while total < size:
        value = kinds[index % len(kinds)](index)
        mapping[f"example.com/key-{index:05d}"] = value
        total += len(value) + 24
        index += 1
    return mapping


def test_big_files_parse_exactly_across_chunks() -> None:
    mapping = _big_map(4 * downward._CHUNK)
    text = format_map(mapping)
    for form in (text, text.encode("utf-8"), text + "\n", text.replace("\n", "\r\n")):
        assert parse_map(form) == mapping


@pytest.mark.parametrize("damage", ["\\q", '"', "\x00", "\\xc3", "\\ud800", "\n", "\\"])
@pytest.mark.parametrize("where", [0.1, 0.5, 0.93])
def test_damage_deep_in_a_big_file_is_found_on_its_line(damage: str, where: float) -> None:
    """One bad character or escape in a file of several chunks: the same result or error
    as the reference reader, on str and bytes."""
    text = format_map(_big_map(3 * downward._CHUNK))
    position = text.index('="', int(len(text) * where)) + 5
    _check_against_reference(text[:position] + damage + text[position:])


def _plain_map(size: int, text: str) -> dict[str, str]:
    """About ``size`` characters of values without any escape (``text`` in each)."""
    return {
        f"example.com/key-{i:05d}": f"https://example.com/{i}?q={text}" for i in range(size // 60)
    }


# Every raw control character (DEL too), and what else can break a file without escapes.
_PLAIN_DAMAGE = [chr(code) for code in (*range(0x20), 0x7F)] + ['"', "=", "\r\n", "\ud800"]


@pytest.mark.parametrize("damage", _PLAIN_DAMAGE, ids=[f"U+{ord(c[0]):04X}" for c in _PLAIN_DAMAGE])
@pytest.mark.parametrize("text", ["ascii", "café 😀"])
@pytest.mark.parametrize("size", [300, 2 * downward._SEARCH_FROM], ids=["small", "big"])
def test_damage_in_a_file_without_escapes(damage: str, text: str, size: int) -> None:
    """A file without a backslash takes a fast path of its own, which checks small and big
    files differently (big ones: several chunks here): one bad character in a key or a
    value, at the start, middle or end, gives the same result or error as the reference
    reader, on str and bytes."""
    file = format_map(_plain_map(size, text))
    assert "\\" not in file
    assert downward._parse_fast(file) is not None
    lines = file.split("\n")
    with _chunk_size(size // 10):
        for number in (1, len(lines) // 2, len(lines) - 1):
            start = sum(len(line) + 1 for line in lines[:number])
            for position in (start + 3, start + lines[number].index('="') + 5):  # key, value
                _check_against_reference(file[:position] + damage + file[position:])


@pytest.mark.parametrize("value", ['{\\"a",\\"b\\"}', 'a",b', 'a", x', 'a",]', 'a"]\\n'])
@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
def test_a_raw_quote_then_no_json_value_is_a_format_error(value: str, as_bytes: bool) -> None:
    """A raw quote inside a value ends the string in the JSON array the fast path builds;
    what follows it is then no JSON value at all (found by fuzzing: JSON's scanner says so
    with StopIteration, not ValueError)."""
    text = f'k="{value}"\nz="after\\n"'
    with pytest.raises(DownwardAPIFormatError) as info:
        parse_map(text.encode("utf-8") if as_bytes else text)
    assert (info.value.line, info.value.key) == (1, "k")


@pytest.mark.parametrize(
    "lines",
    [
        # A nested array opened in one value and closed two lines later: as many JSON
        # values as lines, one of them a list (this parsed, to a list value, before).
        ['k1="a", ["b"', 'k2="c"', 'k3="d"], "e"', 'k4="x\\ny"'],
        # The same with an object, and in the values JSON reads one by one (non-ASCII).
        ['k1="a", {"b": "c"', 'k2="d": "e"', 'k3="f": "h"}, "g"', 'k4="x\\ny"'],
        ['k1="é", ["b"', 'k2="ü"', 'k3="ö"], "e"', 'k4="x\\ny"'],
        # Enough non-ASCII values to be decoded in an array of their own.
        [
            'k1="é", ["b"',
            'k2="ü"',
            'k3="ö"], "e"',
            *(f'k{i}="ä{i}"' for i in range(4, 9)),
            'k9="\\n"',
        ],
        ['k1="a", [1, "b"', 'k2="c"', 'k3="d", null], "e"', 'k4="x\\ny"'],
    ],
    ids=["array", "object", "non-ascii", "many-non-ascii", "number"],
)
@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
def test_raw_quotes_that_nest_json_values_are_a_format_error(
    lines: list[str], as_bytes: bool
) -> None:
    """Raw quotes can make the JSON array of values the fast path builds hold a nested
    array or object spanning several lines, with the count of values still right: the
    values must all be strings."""
    text = "\n".join(lines)
    with pytest.raises(DownwardAPIFormatError) as info:
        parse_map(text.encode("utf-8") if as_bytes else text)
    assert (info.value.line, info.value.key) == (1, "k1")
    _check_against_reference(text)


def test_parsing_big_files_hardly_sets_off_garbage_collection() -> None:
    """A thousand containers alive at once make CPython's cyclic collector run, and now and
    then scan the whole heap (10 ms and more in a service): a reload must not cause that."""
    text = format_map(_big_map(256 * 1024))
    data = text.encode("utf-8")
    generations: list[int] = []

    def record(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            generations.append(info["generation"])

    gc.collect()
    gc.callbacks.append(record)
    try:
        for _ in range(20):
            parse_map(text)
            parse_map(data)
    finally:
        gc.callbacks.remove(record)
    # Before parsing went a few hundred lines at a time: 283 collections, some of them full.
    assert len(generations) <= 2, generations


@pytest.mark.parametrize(
    "text",
    ['k\ud800="a\\n"\nz="é"', 'k="é\ud800\\n"\nz="b"', 'a="\\n"\nk\ud800="é"'],
    ids=["key", "value", "second-key"],
)
def test_a_lone_surrogate_in_a_str_is_a_format_error(text: str) -> None:
    """JSON's scanner lets lone surrogates through; the fast path must not."""
    with pytest.raises(DownwardAPIFormatError):
        parse_map(text)


def test_only_one_carriage_return_per_line_end() -> None:
    for text in ['a="1"\r\r\nb="2"', 'a="\\x41"\r\r\nb="2"', 'a="\\xa9"\r\r\nb="é"']:
        for variant in (text, text.encode("utf-8")):
            with pytest.raises(DownwardAPIFormatError, match="after the closing quote") as info:
                parse_map(variant)
            assert (info.value.line, info.value.key) == (1, "a")


@given(st.binary(max_size=200))
def test_arbitrary_bytes_parse_or_raise_the_format_error(data: bytes) -> None:
    try:
        result = parse_map(data)
    except DownwardAPIFormatError:
        return
    assert result == _reference_parse(data.decode("utf-8"))


# --------------------------------------------------------------------------------------------
# Accepted input


def test_examples() -> None:
    assert parse_map("") == {}
    assert parse_map(b"") == {}
    assert parse_map('app="shop"\nrole="canary"') == {"app": "shop", "role": "canary"}
    assert parse_map('a=""') == {"a": ""}
    assert parse_map('eq="a=b=c"\nhash="#x"\nsp="  x  "') == {
        "eq": "a=b=c",
        "hash": "#x",
        "sp": "  x  ",
    }
    assert parse_map('j="{\\"a\\": [1, \\"=\\"]}"') == {"j": '{"a": [1, "="]}'}


def test_input_types() -> None:
    expected = {"a": "é"}
    assert parse_map('a="é"') == expected
    assert parse_map('a="é"'.encode()) == expected
    assert parse_map(bytearray('a="é"'.encode())) == expected
    assert parse_map(memoryview('a="é"'.encode())) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\n", {}),
        ("\r\n", {}),
        ('a="1"\n', {"a": "1"}),
        ('a="1"\r\n', {"a": "1"}),
        ('a="1"\r\nb="2"', {"a": "1", "b": "2"}),
        ('a="1"\r\nb="\\t"\r\n', {"a": "1", "b": "\t"}),
        ('\ufeffa="1"', {"a": "1"}),
    ],
)
def test_line_ends_and_byte_order_mark(text: str, expected: dict[str, str]) -> None:
    assert parse_map(text) == expected
    assert parse_map(text.encode("utf-8")) == expected


@pytest.mark.parametrize(
    ("escaped", "value"),
    [
        ('\\a\\b\\f\\n\\r\\t\\v\\\\\\"', '\a\b\f\n\r\t\v\\"'),
        ("\\x41\\x7f\\x00", "A\x7f\x00"),
        ("\\101\\000\\177", "A\x00\x7f"),
        ("\\u00e9\\u200b\\uFFFD", "é\u200b\ufffd"),
        ("\\U0001F600\\U0010ffff", "😀\U0010ffff"),
        # byte escapes spell UTF-8 together, also with literal text around them
        ("caf\\xc3\\xa9", "café"),
        ("caf\\303\\251", "café"),
        ("\\xf0\\x9f\\x98\\x80", "😀"),
        # invalid UTF-8 from byte escapes: one U+FFFD per bad byte, as Go reads it
        ("\\xff", "\ufffd"),
        ("a\\xffb\\xfe", "a\ufffdb\ufffd"),
        ("\\xe2\\x82A", "\ufffd\ufffdA"),
        ("\\xc3©", "\ufffd©"),
        ("\\xed\\xa0\\x80", "\ufffd\ufffd\ufffd"),
        ("\\\\x41", "\\x41"),
        ("\\\\\\x41", "\\A"),
    ],
)
def test_escapes(escaped: str, value: str) -> None:
    file = f'k="{escaped}"'
    assert parse_map(file) == {"k": value}
    assert parse_map(file.encode("utf-8")) == {"k": value}
    assert unquote(f'"{escaped}"') == value
    # also on a later line of a file that takes the fast paths
    big = f'a="plain"\nb="{{\\"json\\": 1}}\\n"\nk="{escaped}"\nz="é"'
    assert parse_map(big)["k"] == value
    assert parse_map(big.encode("utf-8"))["k"] == value


def test_any_literal_character_is_accepted() -> None:
    # printable or not by some Unicode table, literal characters other than raw controls are
    # taken as they are (Go's table may be older or newer than Python's)
    for char in ["\u00a0", "\u200b", "\u2028", "\ue000", "\U000e0001", "\u0378", "\x85", "😀"]:
        assert parse_map(f'k="{char}"') == {"k": char}
        assert parse_map(f'k="\\"{char}"') == {"k": f'"{char}'}


# --------------------------------------------------------------------------------------------
# Malformed input: precise, and never leaking the value

TOKEN = "s3cr3t-TOKEN-7f3a9c"


@pytest.mark.parametrize(
    ("bad_line", "line_key", "reason"),
    [
        (f'secret="{TOKEN}', "secret", "unterminated"),
        (f'secret="{TOKEN}\\"', "secret", "unterminated"),
        (f'secret="{TOKEN}\\', "secret", "unterminated"),
        (f'secret="{TOKEN}\\q"', "secret", "unknown escape"),
        (f'secret="{TOKEN}\\/"', "secret", "unknown escape"),
        (f'secret="{TOKEN}\\8"', "secret", "unknown escape"),
        (f'secret="{TOKEN}\\\'"', "secret", "\\'"),
        (f'secret="{TOKEN}\\xZZ"', "secret", "\\x"),
        (f'secret="{TOKEN}\\x4"', "secret", "\\x"),
        (f'secret="{TOKEN}\\u12G4"', "secret", "\\u"),
        (f'secret="{TOKEN}\\U0001F60"', "secret", "\\U"),
        (f'secret="{TOKEN}\\400"', "secret", "octal"),
        (f'secret="{TOKEN}\\12x"', "secret", "octal"),
        (f'secret="{TOKEN}\\ud800"', "secret", "surrogate"),
        (f'secret="{TOKEN}\\uDFFF"', "secret", "surrogate"),
        (f'secret="{TOKEN}\\U0000d800"', "secret", "surrogate"),
        (f'secret="\\ud83d\\ude00{TOKEN}"', "secret", "surrogate"),
        (f'secret="{TOKEN}\\U00110000"', "secret", "U+10FFFF"),
        (f'secret="{TOKEN}\tx"', "secret", "control"),
        (f'secret="{TOKEN}\x00"', "secret", "control"),
        (f'secret="{TOKEN}\x7f"', "secret", "control"),
        (f'secret="{TOKEN}\rx"', "secret", "control"),
        (f'secret="{TOKEN}\ud800"', "secret", "surrogate"),
        (f'secret="{TOKEN}"x', "secret", "after the closing quote"),
        (f'secret="{TOKEN}" ', "secret", "after the closing quote"),
        (f'secret="a"{TOKEN}"', "secret", "after the closing quote"),
        (f'secret="a\\\\"{TOKEN}"', "secret", "after the closing quote"),
        (f"secret={TOKEN}", "secret", "does not start with a double quote"),
        (f'secret= "{TOKEN}"', "secret", "does not start with a double quote"),
        (f"secret{TOKEN}", None, "missing '='"),
        (f'"{TOKEN}"', None, "missing '='"),
        (f'="{TOKEN}"', None, "empty key"),
        ("", None, "empty line"),
        ('a="duplicate"', "a", "duplicate key"),
        (f'sec\x01ret="{TOKEN}"', None, "control character in key"),
    ],
)
@pytest.mark.parametrize(
    "before",
    [
        "",
        'a="plain"\n',
        'a="one"\nb="{\\"json\\": \\"x\\"}\\n"\n',
        'a="\\x1b[0m"\nb="é"\n',
    ],
    ids=["first-line", "plain-file", "json-escapes", "go-escapes"],
)
@pytest.mark.parametrize("after", ["", '\nzz="after"'], ids=["last", "middle"])
@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
def test_malformed_lines(
    *, bad_line: str, line_key: str | None, reason: str, before: str, after: str, as_bytes: bool
) -> None:
    if bad_line == "" and not before:
        pytest.skip("an empty first line is a file starting with a newline")
    if bad_line == "" and not after:
        pytest.skip("an empty last line is the accepted trailing newline")
    if line_key == "a" and not before:
        pytest.skip("a duplicate needs an earlier line")
    if "\ud800" in bad_line and as_bytes:
        pytest.skip("a lone surrogate has no UTF-8 form")
    text = before + bad_line + after
    line = before.count("\n") + 1
    with pytest.raises(DownwardAPIFormatError) as info:
        parse_map(text.encode("utf-8") if as_bytes else text, source="/etc/podinfo/annotations")
    err = info.value
    assert isinstance(err, ValueError)
    assert (err.line, err.key, err.source) == (line, line_key, "/etc/podinfo/annotations")
    message = str(err)
    assert message.startswith(f"/etc/podinfo/annotations, line {line}")
    assert reason in err.reason
    if line_key is not None:
        assert repr(line_key) in message
    for leak in (TOKEN, TOKEN[:6], "7f3a9c"):
        assert leak not in message
        assert leak not in repr(err)
    assert err.__cause__ is None


def test_invalid_utf8_names_the_line_and_key() -> None:
    data = b'a="1"\nsecret="' + TOKEN.encode() + b'\xff"\nb="2"'
    with pytest.raises(DownwardAPIFormatError) as info:
        parse_map(data, source="annotations")
    err = info.value
    assert (err.line, err.key) == (2, "secret")
    assert "UTF-8" in str(err)
    assert TOKEN not in str(err)
    with pytest.raises(DownwardAPIFormatError) as info:
        parse_map(b"\xffkey=" + TOKEN.encode(), source="annotations")
    assert (info.value.line, info.value.key) == (1, None)


def test_error_without_source() -> None:
    with pytest.raises(DownwardAPIFormatError) as info:
        parse_map('a="1"\nb')
    assert str(info.value).startswith("line 2: ")
    assert info.value.source is None


def test_empty_lines_are_errors_except_one_trailing_newline() -> None:
    assert parse_map('a="1"\n') == {"a": "1"}
    for text, line in [('a="1"\n\n', 2), ('\na="1"', 1), ('a="1"\n\nb="2"', 2), ("\n\n", 1)]:
        with pytest.raises(DownwardAPIFormatError, match="empty line") as info:
            parse_map(text)
        assert info.value.line == line


def test_unquote_rejects_and_never_leaks() -> None:
    assert unquote('""') == ""
    for bad in [TOKEN, f'"{TOKEN}', f'"{TOKEN}\\q"', f'"{TOKEN}"x', f'"{TOKEN}\n"']:
        with pytest.raises(DownwardAPIFormatError) as info:
            unquote(bad)
        assert TOKEN not in str(info.value)


# --------------------------------------------------------------------------------------------
# Rendering


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("", '""'),
        ("shop", '"shop"'),
        ('say "hi" \\o/', '"say \\"hi\\" \\\\o/"'),
        ("\a\b\f\n\r\t\v", '"\\a\\b\\f\\n\\r\\t\\v"'),
        ("\x00\x01\x1b\x1f\x7f", '"\\x00\\x01\\x1b\\x1f\\x7f"'),
        ("\x80\x85\x9f\xa0\xad", '"\\u0080\\u0085\\u009f\\u00a0\\u00ad"'),
        ("é ß 数 😀 \ufffd ️", '"é ß 数 😀 \ufffd ️"'),
        ("\u200b\u200e\u2028\u3000\ufeff\ue000", '"\\u200b\\u200e\\u2028\\u3000\\ufeff\\ue000"'),
        ("\U0001d173\U000e0001\U0010ffff", '"\\U0001d173\\U000e0001\\U0010ffff"'),
        ('{"a": [1, 2]}\n', '"{\\"a\\": [1, 2]}\\n"'),
    ],
)
def test_quote_is_go_strconv_quote(value: str, quoted: str) -> None:
    assert quote(value) == quoted
    assert unquote(quoted) == value


def test_format_map_layout() -> None:
    assert format_map({}) == ""
    assert format_map({"role": "canary", "app": "shop"}) == 'app="shop"\nrole="canary"'
    assert format_map({"b": "2", "B": "1", "a/b": "3"}) == 'B="1"\na/b="3"\nb="2"'


def test_format_map_rejects_what_cannot_be_read_back() -> None:
    for key in ["", "a=b", "a\nb", "a\x00", "a\ud800"]:
        with pytest.raises(ValueError, match="cannot be written"):
            format_map({key: "v"})
    with pytest.raises(ValueError, match="surrogate"):
        format_map({"k": f"{TOKEN}\ud800"})
    with pytest.raises(ValueError, match="surrogate"):
        quote("\udc80")


def test_docstring_examples() -> None:
    result = doctest.testmod(downward, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 6
    assert result.failed == 0


def test_imports_only_the_standard_library_and_errors() -> None:
    tree = ast.parse(Path(downward.__file__).read_text(encoding="utf-8"))
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    third_party = {
        name
        for name in imported
        if name and name.split(".")[0] not in sys.stdlib_module_names | {"__future__"}
    }
    # _goprint is generated data (Go's printability tables) and imports nothing itself.
    assert third_party == {"canaryconf._errors", "canaryconf._goprint"}
    tables = ast.parse(Path(downward.__file__).with_name("_goprint.py").read_text("utf-8"))
    assert not [n for n in ast.walk(tables) if isinstance(n, (ast.Import, ast.ImportFrom))]


# --------------------------------------------------------------------------------------------
# Go's printability tables, whatever Python's Unicode version


def _unicode_15_only() -> set[int]:
    """Code points printable for Go 1.21+ (Unicode 15.0.0) but not for Go 1.19 (13.0.0)."""
    return {
        code
        for code in range(0x110000)
        if not 0xD800 <= code <= 0xDFFF
        and downward.go_printable(chr(code))
        and not downward.go_printable(chr(code), "13.0.0")
    }


def test_go_printable_tables_follow_go_not_python() -> None:
    # U+1FAE8 (shaking face) is Unicode 15.0, U+1FAE0 (melting face) Unicode 14.0: neither
    # is in Go 1.19's tables; both are in Go 1.21's. Python 3.11 (Unicode 14) keeps
    # U+1FAE0 and escapes U+1FAE8, unlike any Go release, so it is not the reference.
    for code in (0x1FAE0, 0x1FAE8):
        assert quote(chr(code), unicode_version="13.0.0") == f'"\\U{code:08x}"'
        assert quote(chr(code)) == f'"{chr(code)}"'
    assert downward.GO_UNICODE_VERSION == "15.0.0"
    only_15 = _unicode_15_only()
    # Unicode 14.0 and 15.0 assigned 838 + 4,489 characters, of which all but 8 format
    # characters and the like are printable; Go never drops a printable code point.
    assert len(only_15) == 5319
    assert not any(
        downward.go_printable(chr(code), "13.0.0") and not downward.go_printable(chr(code))
        for code in range(0x110000)
        if not 0xD800 <= code <= 0xDFFF
    )


def test_vectors_render_with_current_tables_except_newly_printable_code_points() -> None:
    # With the tables current kubelets use, a vector renders differently exactly where Go
    # 1.19 escaped a code point that Unicode 14 or 15 made printable.
    only_15 = _unicode_15_only()
    differing = 0
    for number, file, mapping in _vectors():
        current = format_map(mapping)
        if current == file:
            assert not any(ord(c) in only_15 for v in mapping.values() for c in v), number
            continue
        differing += 1
        newer = {ord(c) for v in mapping.values() for c in v} & only_15
        assert newer, f"vector line {number} differs without a newly printable code point"
        assert format_map(mapping, unicode_version="13.0.0") == file
        assert parse_map(current) == mapping
    print(f"{differing} vectors render differently with Unicode 15.0.0 tables")


def test_go_127_table_adds_unicode_16_and_17() -> None:
    # U+1FAE9 (Unicode 16.0) is escaped by Go 1.21-1.26 and kept by Go 1.27 (Unicode 17).
    assert quote("\U0001fae9") == '"\\U0001fae9"'
    assert quote("\U0001fae9", unicode_version="17.0.0") == '"\U0001fae9"'
    assert not any(
        downward.go_printable(chr(code)) and not downward.go_printable(chr(code), "17.0.0")
        for code in range(0x110000)
        if not 0xD800 <= code <= 0xDFFF
    )


def test_unknown_unicode_version_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"no Go printability table for Unicode 9\.0\.0"):
        quote("\u00e9\u200b", unicode_version="9.0.0")
