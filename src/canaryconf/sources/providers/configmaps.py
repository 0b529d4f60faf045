"""ConfigMap volumes: one file per key, in the directories of ``configmap_dirs``."""

from __future__ import annotations

from canaryconf.sources.providers._key_per_file import KeyPerFileSource

__all__ = ["ConfigMapSource"]


class ConfigMapSource(KeyPerFileSource):
    """Fields declared with ``configmap(key)``, and plain fields by name."""

    kind = "configmap"
    accepts = ("configmap",)
    config_key = "configmap_dirs"
    cli_flag = "--configmap-dir"
    cli_help = "a ConfigMap volume directory (repeatable; default: the settings class's)"
