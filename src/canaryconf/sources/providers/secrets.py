"""Secret volumes: one file per key, in the directories of ``secrets_dirs``.

Every value read from here is treated as secret (redacted in diffs, logs and errors),
whatever the field's type; type such fields ``SecretStr``.
"""

from __future__ import annotations

from canaryconf.sources.providers._key_per_file import KeyPerFileSource

__all__ = ["SecretsSource"]


class SecretsSource(KeyPerFileSource):
    """Fields declared with ``secret(key)``, and plain fields by name."""

    kind = "secret"
    accepts = ("secret",)
    config_key = "secrets_dirs"
    cli_flag = "--secrets-dir"
    cli_help = "a Secret volume directory, never shown (repeatable; default: the class's)"
    secret = True
