#!/usr/bin/env python3
"""atheris target: canaryconf.parse_map on arbitrary bytes (see targets.parse_map_target).

    python fuzz/fuzz_parse_map.py -max_total_time=60 fuzz/corpus-parse_map tests/corpus/parse_map

Any libFuzzer flag works (``-help=1`` lists them); see fuzz/README.md.
"""

import sys

import atheris

with atheris.instrument_imports(include=["canaryconf", "targets"]):
    import targets


def main() -> None:
    atheris.Setup(sys.argv, targets.parse_map_target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
