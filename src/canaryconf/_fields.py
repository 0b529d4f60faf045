"""Field helpers: where a settings field takes its value from, and how it reloads.

Each helper returns a pydantic ``Field`` whose ``json_schema_extra`` carries a
``"canaryconf"`` entry; the sources read it back with :func:`field_mapping`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast

from pydantic import Field, SecretBytes, SecretStr
from pydantic.fields import FieldInfo

__all__ = [
    "FieldMapping",
    "annotation",
    "configmap",
    "field_mapping",
    "is_secret_field",
    "label",
    "pod_field",
    "resource",
    "restart_required",
    "secret",
]

SourceKind = Literal["annotation", "label", "pod_field", "resource", "configmap", "secret"]
_EXTRA_KEY = "canaryconf"

#: Field paths the Downward API can mount as files, and the file name used by default.
POD_FIELD_FILES = {
    "metadata.name": "name",
    "metadata.namespace": "namespace",
    "metadata.uid": "uid",
    "name": "name",
    "namespace": "namespace",
    "uid": "uid",
}


@dataclass(frozen=True)
class FieldMapping:
    """What a field's helper said: its source, key or file, secrecy and reload mode."""

    source: SourceKind | None = None
    key: str | None = None
    secret: bool = False
    restart: bool = False


def _field(
    default: Any,
    mapping: dict[str, Any],
    default_factory: Any | None,
    kwargs: dict[str, Any],
) -> Any:
    extra = dict(kwargs.pop("json_schema_extra", None) or {})
    extra[_EXTRA_KEY] = {k: v for k, v in mapping.items() if v not in (None, False)}
    if default_factory is not None:
        return Field(default_factory=default_factory, json_schema_extra=extra, **kwargs)
    return Field(default, json_schema_extra=extra, **kwargs)


def annotation(
    key: str,
    default: Any = ...,
    *,
    default_factory: Any | None = None,
    secret: bool = False,
    restart_required: bool = False,
    **kwargs: Any,
) -> Any:
    """Take this field from the pod annotation ``key``.

    A key without ``/`` is prefixed with the settings' ``annotation_prefix``; a key with
    ``/`` is used as it is. Complex types (dict, list, models) take a JSON document.

    >>> from canaryconf import CanarySettings, CanaryConfigDict
    >>> class Settings(CanarySettings):
    ...     model_config = CanaryConfigDict(annotation_prefix="canary.example.com/")
    ...     db_url: str = annotation("db-url", default="postgres://stable-db/app")
    """
    mapping = {"source": "annotation", "key": key, "secret": secret, "restart": restart_required}
    return _field(default, mapping, default_factory, kwargs)


def label(
    key: str,
    default: Any = ...,
    *,
    default_factory: Any | None = None,
    restart_required: bool = False,
    **kwargs: Any,
) -> Any:
    """Take this field from the pod label ``key`` (prefixed with ``label_prefix`` unless it
    holds a ``/``).

    >>> from canaryconf import CanarySettings
    >>> class Settings(CanarySettings):
    ...     role: str = label("role", default="stable")
    """
    mapping = {"source": "label", "key": key, "restart": restart_required}
    return _field(default, mapping, default_factory, kwargs)


def pod_field(
    path: str,
    default: Any = ...,
    *,
    file: str | None = None,
    default_factory: Any | None = None,
    restart_required: bool = False,
    **kwargs: Any,
) -> Any:
    """Take this field from a single-value downward file.

    ``path`` is the ``fieldRef.fieldPath`` (``metadata.name``, ``metadata.namespace``,
    ``metadata.uid``, ``metadata.labels['k']``, ``metadata.annotations['k']``) and ``file``
    the ``path`` the volume item gives it (by default ``name``, ``namespace``, ``uid``, or
    the key in brackets).

    >>> from canaryconf import CanarySettings
    >>> class Settings(CanarySettings):
    ...     namespace: str = pod_field("metadata.namespace", default="default")
    """
    mapping = {
        "source": "pod_field",
        "key": file or _default_file(path),
        "restart": restart_required,
    }
    return _field(default, mapping, default_factory, kwargs)


def resource(
    name: str,
    default: Any = ...,
    *,
    file: str | None = None,
    default_factory: Any | None = None,
    restart_required: bool = False,
    **kwargs: Any,
) -> Any:
    """Take this field from a ``resourceFieldRef`` file (``limits.cpu``, ``requests.memory``).

    The kubelet writes a base-10 integer: cpu rounded up to whole divisors (default 1 core),
    memory in divisor units (default bytes). ``file`` is the item's path; by default the
    resource name itself.

    >>> from canaryconf import CanarySettings
    >>> class Settings(CanarySettings):
    ...     cpu_limit: int = resource("limits.cpu", default=1)
    """
    mapping = {"source": "resource", "key": file or name, "restart": restart_required}
    return _field(default, mapping, default_factory, kwargs)


def configmap(
    key: str,
    default: Any = ...,
    *,
    default_factory: Any | None = None,
    restart_required: bool = False,
    **kwargs: Any,
) -> Any:
    """Take this field from the ConfigMap file ``key`` (in any of ``configmap_dirs``)."""
    mapping = {"source": "configmap", "key": key, "restart": restart_required}
    return _field(default, mapping, default_factory, kwargs)


def secret(
    key: str,
    default: Any = ...,
    *,
    default_factory: Any | None = None,
    restart_required: bool = False,
    **kwargs: Any,
) -> Any:
    """Take this field from the Secret file ``key`` (in any of ``secrets_dirs``); the value
    is redacted everywhere canaryconf shows it. Type the field ``SecretStr``."""
    mapping = {"source": "secret", "key": key, "secret": True, "restart": restart_required}
    return _field(default, mapping, default_factory, kwargs)


def restart_required(default: Any = ..., **kwargs: Any) -> Any:
    """A field whose change does not apply live: canaryconf emits ``restart_required``
    instead (and, when configured, asks the process to exit so Kubernetes restarts it).

    >>> from canaryconf import CanarySettings
    >>> class Settings(CanarySettings):
    ...     worker_threads: int = restart_required(4)
    """
    default_factory = kwargs.pop("default_factory", None)
    return _field(default, {"restart": True}, default_factory, kwargs)


def field_mapping(field: FieldInfo) -> FieldMapping:
    """The :class:`FieldMapping` a helper attached to ``field`` (empty for a plain field).
    Read from the field each time (it is cheap): what a reload needs of it is kept per
    class (:func:`~canaryconf.sources.base.class_memo`)."""
    extra = field.json_schema_extra
    if not isinstance(extra, dict):
        return FieldMapping()
    raw = extra.get(_EXTRA_KEY)
    if not isinstance(raw, dict):
        if extra.get("reload") == "restart":
            return FieldMapping(restart=True)
        return FieldMapping()
    source = raw.get("source")
    key = raw.get("key")
    return FieldMapping(
        source=cast(SourceKind, source) if isinstance(source, str) else None,
        key=key if isinstance(key, str) else None,
        secret=bool(raw.get("secret", False)),
        restart=bool(raw.get("restart", False)) or extra.get("reload") == "restart",
    )


def is_secret_field(field: FieldInfo) -> bool:
    """True for ``SecretStr``/``SecretBytes`` fields and fields marked secret."""
    if field_mapping(field).secret:
        return True
    annotation_ = field.annotation
    candidates = getattr(annotation_, "__args__", None) or (annotation_,)
    return any(isinstance(c, type) and issubclass(c, (SecretStr, SecretBytes)) for c in candidates)


def _default_file(path: str) -> str:
    if path in POD_FIELD_FILES:
        return POD_FIELD_FILES[path]
    for prefix in ("metadata.labels['", "metadata.annotations['"):
        if path.startswith(prefix) and path.endswith("']"):
            return path[len(prefix) : -2]
    raise ValueError(
        f"pod_field({path!r}): only metadata.name, metadata.namespace, metadata.uid and "
        "metadata.labels['k'] / metadata.annotations['k'] can be mounted as files"
    )
