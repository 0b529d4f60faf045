"""The generated Go printability tables and the tool that makes them
(``tools/gen_goprint.py``): Go's lookup rules, and a lossless encoding."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from canaryconf import downward
from canaryconf._goprint import TABLES

TOOL = Path(__file__).resolve().parent.parent / "tools" / "gen_goprint.py"

# A miniature isprint.go in Go's layout, with made-up ranges (not Go's data).
FAKE_ISPRINT = """
package strconv

var isPrint16 = []uint16{
\t0x0020, 0x007e,
\t0x00a1, 0x00ff,
\t0x0400, 0x0410,
}

var isNotPrint16 = []uint16{
\t0x00ad,
\t0x0405,
}

var isPrint32 = []uint32{
\t0x010000, 0x010010,
\t0x020000, 0x020005,
}

var isNotPrint32 = []uint16{ // add 0x10000 to each entry
\t0x0003,
\t0x10002,
}
"""


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_goprint", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_goprint"] = module
    spec.loader.exec_module(module)
    return module


def test_tool_reads_go_tables_with_go_lookup_rules() -> None:
    printable = _tool().printable_from_isprint_go(FAKE_ISPRINT)
    assert 0x20 in printable and 0x7F not in printable
    assert 0xAD not in printable and 0xAC in printable  # an exception inside a range
    assert 0x405 not in printable and 0x410 in printable and 0x411 not in printable
    assert 0x10003 not in printable and 0x10004 in printable
    assert 0x20005 in printable and 0x20006 not in printable


def test_tool_encoding_round_trips_through_the_runtime_decoder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tool = _tool()
    printable = tool.printable_from_isprint_go(FAKE_ISPRINT)
    monkeypatch.setitem(TABLES, "0.0-test", tool.encode(printable))
    downward._go_not_printable.cache_clear()
    try:
        accepted = {
            code
            for code in range(0x30000)
            if not 0xD800 <= code <= 0xDFFF and downward.go_printable(chr(code), "0.0-test")
        }
    finally:
        downward._go_not_printable.cache_clear()
    # ASCII is decided without the table (it is the same in every Go version).
    assert accepted - set(range(0x80)) == printable - set(range(0x80))


def test_tool_refuses_what_is_not_an_isprint_go() -> None:
    tool = _tool()
    try:
        tool.printable_from_isprint_go("package strconv\n")
    except SystemExit as exc:
        assert "not an isprint.go" in str(exc)
    else:
        raise AssertionError("accepted a file without the tables")


def test_shipped_tables_agree_on_ascii_and_latin1() -> None:
    for version in TABLES:
        for code in range(0x100):
            expected = 0x20 <= code <= 0x7E or (0xA1 <= code <= 0xFF and code != 0xAD)
            assert downward.go_printable(chr(code), version) is expected, (version, code)
