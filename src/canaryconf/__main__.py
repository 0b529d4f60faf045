"""``python -m canaryconf``: the ``canaryconf`` command."""

from canaryconf.cli import main

main()
