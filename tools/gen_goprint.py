"""Generate ``src/canaryconf/_goprint.py``: Go's printability table, as data.

The kubelet renders label and annotation values with Go's ``strconv.Quote``, which keeps a
rune literally when ``strconv.IsPrint`` says it is printable and escapes it otherwise. That
answer depends on the Unicode version of the Go release that built the kubelet, not on the
Python that reads the file, so canaryconf ships the table instead of asking
``str.isprintable()``.

Each table is given on the command line as ``UNICODE_VERSION=SOURCE``, where ``SOURCE`` is

* the path of a Go release's ``src/strconv/isprint.go`` (its four range and exception
  tables are read; Go's own code is not copied anywhere), or
* ``unicodedata2`` (or ``unicodedata2:PYTHON``, run by another interpreter): the
  categories of the installed ``unicodedata2`` package, whose Unicode version must be
  ``UNICODE_VERSION``. Go's ``IsPrint`` is "category L, M, N, P or S, or the
  ASCII space" (``unicode.IsPrint``, which ``makeisprint.go`` turns into ``isprint.go``), so
  this gives the same table as that release's ``isprint.go``.

Usage (Go 1.19's tables are those of Debian's ``golang-1.19-src`` package)::

    python tools/gen_goprint.py --output src/canaryconf/_goprint.py \\
        13.0.0=/usr/share/go-1.19/src/strconv/isprint.go \\
        15.0.0=unicodedata2:PYTHON_15 17.0.0=unicodedata2:PYTHON_17

(``PYTHON_15`` and ``PYTHON_17``: interpreters of virtual environments with
``pip install unicodedata2==15.0.0`` and ``==17.0.0``).

With ``--compare A B`` it prints how many code points two sources disagree on instead.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Iterable

MAX_RUNE = 0x10FFFF
_TABLE_RE = re.compile(
    r"var (isPrint16|isNotPrint16|isPrint32|isNotPrint32)\s*=\s*\[\]uint\d+\{(.*?)\}", re.S
)


def printable_from_isprint_go(text: str) -> set[int]:
    """The code points ``strconv.IsPrint`` accepts, from the tables of an ``isprint.go``."""
    tables = {
        name: [int(x, 16) for x in re.findall(r"0x[0-9a-fA-F]+", body)]
        for name, body in _TABLE_RE.findall(text)
    }
    missing = {"isPrint16", "isNotPrint16", "isPrint32", "isNotPrint32"} - set(tables)
    if missing:
        raise SystemExit(f"not an isprint.go: no {', '.join(sorted(missing))}")
    printable: set[int] = set()
    for ranges in (tables["isPrint16"], tables["isPrint32"]):
        for lo, hi in zip(ranges[::2], ranges[1::2], strict=True):
            printable.update(range(lo, hi + 1))
    printable.difference_update(tables["isNotPrint16"])
    # The 32-bit exceptions are stored minus 0x10000 (so they all lie below 0x20000).
    printable.difference_update(0x10000 + x for x in tables["isNotPrint32"])
    return printable


def printable_from_unicodedata2(version: str) -> set[int]:
    """Categories L, M, N, P, S and the ASCII space, as Go's ``unicode.IsPrint``."""
    import unicodedata2  # type: ignore[import-not-found]  # noqa: PLC0415  (generator only)

    if unicodedata2.unidata_version != version:
        raise SystemExit(f"unicodedata2 has Unicode {unicodedata2.unidata_version}, not {version}")
    printable = {0x20}
    for code in range(MAX_RUNE + 1):
        if unicodedata2.category(chr(code))[0] in "LMNPS":
            printable.add(code)
    return printable


def load(version: str, source: str) -> set[int]:
    if source == "unicodedata2":
        return printable_from_unicodedata2(version)
    if source.startswith("unicodedata2:"):
        command = [source.partition(":")[2], __file__, "--print-encoded", version]
        encoded = subprocess.run(
            command, capture_output=True, text=True, check=True, timeout=600
        ).stdout.strip()
        return decode(encoded)
    with open(source, encoding="utf-8") as file:
        return printable_from_isprint_go(file.read())


def ranges(points: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted inclusive ranges covering ``points``."""
    out: list[tuple[int, int]] = []
    for code in sorted(points):
        if out and out[-1][1] == code - 1:
            out[-1] = (out[-1][0], code)
        else:
            out.append((code, code))
    return out


def encode(points: set[int]) -> str:
    """Ranges as base-36 ``gap+length`` pairs: the gap since the previous range's end."""
    parts = []
    previous = 0
    for lo, hi in ranges(points):
        parts.append(f"{_b36(lo - previous)}+{_b36(hi - lo)}")
        previous = hi
    return ",".join(parts)


def decode(encoded: str) -> set[int]:
    """The inverse of :func:`encode`."""
    points: set[int] = set()
    end = 0
    for pair in encoded.split(","):
        gap, length = pair.split("+")
        start = end + int(gap, 36)
        end = start + int(length, 36)
        points.update(range(start, end + 1))
    return points


def _b36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while True:
        number, rest = divmod(number, 36)
        text = digits[rest] + text
        if not number:
            return text


def render(tables: dict[str, tuple[str, set[int]]]) -> str:
    lines = [
        '"""Go\'s ``strconv.IsPrint`` tables by Unicode version (generated: do not edit).',
        "",
        "Made by ``tools/gen_goprint.py`` from:",
        "",
    ]
    lines += [f"* Unicode {v}: {_describe(src)}" for v, (src, _) in tables.items()]
    lines += [
        "",
        "Each table lists the printable ranges as comma-separated base-36 ``gap+length``",
        "pairs (gap from the previous range's end, length minus one); see",
        ":func:`canaryconf.downward.go_printable`.",
        '"""',
        "",
        "TABLES: dict[str, str] = {",
    ]
    for version, (_, points) in tables.items():
        data = encode(points)
        lines.append(f'    "{version}": (')
        for start in range(0, len(data), 84):
            lines.append(f'        "{data[start : start + 84]}"')
        lines.append("    ),")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _describe(source: str) -> str:
    if source.startswith("unicodedata2"):
        return "the unicodedata2 package's categories (L, M, N, P, S and the ASCII space)"
    return "the tables of a Go release's ``strconv/isprint.go``"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tables", nargs="*", metavar="VERSION=SOURCE")
    parser.add_argument("--print-encoded", metavar="VERSION", help=argparse.SUPPRESS)
    parser.add_argument("--output", help="the module to write (default: print it)")
    parser.add_argument(
        "--compare", action="store_true", help="count the code points two tables disagree on"
    )
    args = parser.parse_args(argv)
    if args.print_encoded:
        print(encode(printable_from_unicodedata2(args.print_encoded)))
        return 0
    tables: dict[str, tuple[str, set[int]]] = {}
    for spec in args.tables:
        version, _, source = spec.partition("=")
        if not source:
            parser.error(f"{spec!r} is not VERSION=SOURCE")
        tables[version] = (source, load(version, source))
    if args.compare:
        (a, (_, pa)), (b, (_, pb)) = list(tables.items())[:2]
        print(f"printable in {b} only: {len(pb - pa)}; in {a} only: {len(pa - pb)}")
        return 0
    module = render(tables)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as file:
            file.write(module)
    else:
        sys.stdout.write(module)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
