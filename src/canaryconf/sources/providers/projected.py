"""Projected volumes: downwardAPI items, ConfigMap keys and Secret keys in one directory.

The kubelet writes all of a ``projected`` volume with one AtomicWriter, so its items share
one generation; each item has its own mode (a Secret item is often 0400). canaryconf reads
only the files the settings class can use, so an item the application's user may not read
stops nothing unless a field needs it, and then the error names its stable path.

Key-per-file fields (``configmap("k")``, ``secret("k")``, plain fields by name) are served
here; the downward items (``labels``, ``annotations``, ``metadata.name``...) are read by
the label, annotation and pod-field sources, which look in ``projected_dirs`` after
``downward_api_dir``. A value is secret when its field is declared with ``secret(...)``
or its file is listed in ``projected_secret_keys`` (the paths of the Secret items).
"""

from __future__ import annotations

from canaryconf.sources.providers._key_per_file import KeyPerFileSource

__all__ = ["ProjectedSource"]


class ProjectedSource(KeyPerFileSource):
    """Fields declared with ``configmap(key)`` or ``secret(key)``, and plain fields by name,
    from the directories of ``projected_dirs``."""

    kind = "projected"
    accepts = ("configmap", "secret")
    config_key = "projected_dirs"
    secret_keys_key = "projected_secret_keys"  # noqa: S105 (a config key, not a secret)
    cli_flag = "--projected-dir"
    cli_help = (
        "a projected volume directory (repeatable; default: the class's); without --settings"
        " no value of it is shown (the class's projected_secret_keys says which are secret)"
    )
    selective = True
    holds_downward_items = True
