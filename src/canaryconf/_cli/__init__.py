"""The ``canaryconf`` command's subcommands, one module each; :mod:`canaryconf.cli` wires
them to argparse."""
