#!/usr/bin/env python3
"""atheris target: arbitrary bytes as the files of a downwardAPI, a ConfigMap and a Secret
volume, read, validated and reloaded (see targets.volume_target).

    python fuzz/fuzz_volume.py -max_total_time=60 fuzz/corpus-volume tests/corpus/volume

Any libFuzzer flag works (``-help=1`` lists them); see fuzz/README.md.
"""

import sys

import atheris

with atheris.instrument_imports(include=["canaryconf", "targets"]):
    import targets


def main() -> None:
    atheris.Setup(sys.argv, targets.volume_target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
