"""Typed settings from a pod's labels, annotations, downward files, ConfigMaps and Secrets.

Precedence, highest first: init kwargs, annotations, labels, single-value downward files,
projected volumes, ConfigMap files, Secret files (the order of the source registry,
:func:`~canaryconf.sources.base.registered_sources`), environment variables, dotenv,
pydantic's ``secrets_dir``, defaults. Dynamic, pod-specific sources override static ones:
an environment variable is fixed when the pod starts, so it is the baseline that canary
metadata overrides.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import traceback
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar, TypeVar, get_args

import pydantic
import pydantic_core
import pydantic_settings
from pydantic import PydanticUserError, ValidationError
from pydantic_core.core_schema import ErrorType
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from canaryconf._errors import CanaryConfError, FieldProblem, SettingsValidationError
from canaryconf._fields import field_mapping, is_secret_field
from canaryconf.sources import providers as _providers  # noqa: F401  (registers the kinds)
from canaryconf.sources.base import (
    BuildContext,
    Origin,
    StaticValues,
    TrackedSource,
    canaryconf_order,
    class_memo,
    current_context,
    enter_context,
    exit_context,
    field_names_by_key,
    merge_into,
    places_own_sources,
    registered_sources,
    volume_dirs,
    volume_values,
)
from canaryconf.volume import VolumeSnapshot

__all__ = [
    "REDACTED",
    "CanaryConfigDict",
    "CanarySettings",
    "Redacted",
    "build_settings",
    "redacted_digest",
    "redacted_dump",
    "restart_fields",
    "secret_fields",
]


S = TypeVar("S", bound="CanarySettings")


class Redacted(str):
    """The stand-in for a secret value: text ``**********``, and a type of its own.

    Redaction is decided where values are read (:func:`redacted_dump`,
    :meth:`~canaryconf.Change.diff`, the CLI's readers) and carried by this type to every
    output: a renderer asks ``isinstance(value, Redacted)``, never compares text, so a
    plain setting whose value happens to be ``**********`` is still shown and exported. It
    is a ``str``, so JSON encoders of every framework write it as is.

    >>> REDACTED, isinstance(REDACTED, Redacted), isinstance("**********", Redacted)
    ('**********', True, False)
    """

    __slots__ = ()

    def __new__(cls, *_: object) -> Redacted:
        return super().__new__(cls, "**********")

    def __repr__(self) -> str:
        return "'**********'"

    def __reduce__(self) -> tuple[type[Redacted], tuple[()]]:
        return Redacted, ()


#: The one :class:`Redacted` value.
REDACTED = Redacted()


class CanaryConfigDict(SettingsConfigDict, total=False):
    """``model_config`` of a :class:`CanarySettings`: pydantic-settings' keys plus these.

    - ``downward_api_dir``: the downwardAPI volume (default ``/etc/podinfo``; None for none)
    - ``labels_file`` / ``annotations_file``: its map files (default ``labels``,
      ``annotations``)
    - ``annotation_prefix``: prepended to annotation keys without ``/`` (default "")
    - ``label_prefix``: when set, plain fields are also looked up as labels
    - ``role_label``: the label holding the rollout role (default ``role``)
    - ``configmap_dirs`` / ``secrets_dirs``: key-per-file volumes, first listed wins
    - ``projected_dirs``: projected volumes (downwardAPI, ConfigMap and Secret items in one
      directory); only the files fields need are read. ``projected_secret_keys``: the
      paths of their Secret items, whose values are treated as secret
    - ``require_volumes``: a missing volume directory is an error (default False: it
      contributes nothing, as on a laptop)
    - ``max_file_bytes`` / ``max_volume_bytes``: size caps (default 1 MiB / 4 MiB)
    """

    downward_api_dir: str | os.PathLike[str] | None
    labels_file: str
    annotations_file: str
    annotation_prefix: str
    label_prefix: str | None
    role_label: str
    configmap_dirs: Sequence[str | os.PathLike[str]]
    secrets_dirs: Sequence[str | os.PathLike[str]]
    projected_dirs: Sequence[str | os.PathLike[str]]
    projected_secret_keys: Sequence[str]
    require_volumes: bool
    max_file_bytes: int
    max_volume_bytes: int


#: The key of a snapshot's origins in its ``__pydantic_private__``.
_ORIGINS = "_canaryconf_origins"
_NO_ORIGINS: Mapping[str, Origin] = MappingProxyType({})


def origins_of(settings: CanarySettings) -> Mapping[str, Origin]:
    """Where each field of ``settings`` that was not a default came from (empty for a
    snapshot made without validation, by ``model_construct``)."""
    private = settings.__pydantic_private__
    origins: Mapping[str, Origin] = private.get(_ORIGINS, _NO_ORIGINS) if private else _NO_ORIGINS
    return origins


class CanarySettings(BaseSettings):
    """Base class of settings read from Kubernetes volumes; instances are frozen snapshots.

    >>> import tempfile
    >>> from canaryconf import CanaryConfigDict, annotation, label
    >>> from canaryconf.testing import KubeletWriter, pod_files
    >>> vol = tempfile.mkdtemp()
    >>> _ = KubeletWriter(vol).write(pod_files(
    ...     labels={"role": "canary"},
    ...     annotations={"canary.example.com/db-url": "postgres://canary-db/app"}))
    >>> class Settings(CanarySettings):
    ...     model_config = CanaryConfigDict(
    ...         downward_api_dir=vol, annotation_prefix="canary.example.com/")
    ...     db_url: str = annotation("db-url", default="postgres://stable-db/app")
    ...     role: str = label("role", default="stable")
    >>> s = Settings()
    >>> s.db_url, s.role
    ('postgres://canary-db/app', 'canary')

    A field that fails validation raises :class:`~canaryconf.SettingsValidationError`
    naming the file, line and key its value came from, never the value.
    """

    model_config: ClassVar[CanaryConfigDict] = CanaryConfigDict(frozen=True, extra="ignore")

    # Where each value came from is kept in pydantic's dict of private values (copied,
    # pickled and compared with the snapshot) under ``_ORIGINS``, without declaring a
    # private attribute: one would have pydantic fill in its default after every
    # validation, in Python, before ``__init__`` sets it (see ``origins_of``).

    def __init__(__canaryconf_self__, **values: Any) -> None:
        cls = type(__canaryconf_self__)
        ctx = current_context(cls)
        token = enter_context(ctx)
        error: SettingsValidationError | None = None
        try:
            if ctx.static is not None and reuses_static_values(cls):
                pydantic.BaseModel.__init__(
                    __canaryconf_self__, **_values_with_static(cls, ctx, ctx.static)
                )
            else:
                super().__init__(**values)
        except ValidationError as exc:
            error = _settings_error(cls, exc, ctx)
        except (CanaryConfError, PydanticUserError):
            # canaryconf's own errors (a malformed label or annotation file, an unreadable
            # volume) are built never to hold a value, and pydantic's user errors speak of
            # the class, not of values: they pass through as they are.
            raise
        except Exception as exc:
            # pydantic passes on as it is what a validator raised if it is not a ValueError
            # or an AssertionError (a KeyError from a lookup, a TypeError): its message can
            # quote a value, a secret one too.
            if not _has_secrets(cls, ctx):
                raise
            error = _validator_error(cls, exc, ctx)
        finally:
            exit_context(token)
        if error is not None:
            # Raised outside the ``except``: the ValidationError holds the bad input, and
            # ``from None`` would still keep it reachable as ``__context__``.
            raise error
        if ctx.problems:
            raise SettingsValidationError(cls.__name__, ctx.problems)
        # (pydantic sets a dict of private values only for a class that declares private
        # attributes: a subclass's own; else canaryconf makes it.)
        private = __canaryconf_self__.__pydantic_private__
        if private is None:
            object.__setattr__(
                __canaryconf_self__, "__pydantic_private__", {_ORIGINS: dict(ctx.origins)}
            )
        else:
            private[_ORIGINS] = dict(ctx.origins)

    @classmethod
    @canaryconf_order
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """canaryconf's order (see the module docstring). To change it, override this and
        place :meth:`volume_sources` where you want them."""
        ctx = current_context(settings_cls)
        return (
            TrackedSource(init_settings, "init", ctx),
            *cls.volume_sources(settings_cls),
            TrackedSource(env_settings, "environment", ctx),
            TrackedSource(dotenv_settings, "dotenv", ctx),
            TrackedSource(file_secret_settings, "secrets_dir", ctx),
        )

    @classmethod
    @canaryconf_order
    def volume_sources(
        cls, settings_cls: type[BaseSettings]
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The registered volume sources, highest priority first: annotations, labels, pod
        fields, projected volumes, ConfigMaps, Secrets (and any kind registered with
        :func:`~canaryconf.sources.base.register_source`)."""
        ctx = current_context(settings_cls)
        return tuple(source(settings_cls, ctx) for source in registered_sources())

    @classmethod
    def volume_dirs(cls) -> list[str]:
        """Every volume directory this class reads."""
        return volume_dirs(cls)

    @property
    def origins(self) -> Mapping[str, Origin]:
        """Where each field that was not a default came from."""
        return dict(origins_of(self))

    def __repr_args__(self) -> Any:
        secrets = secret_fields(self)
        for name, value in super().__repr_args__():
            yield name, (REDACTED if name in secrets and value is not None else value)


def build_settings(
    settings_cls: type[CanarySettings],
    volumes: Mapping[str, VolumeSnapshot | None],
    **init_kwargs: Any,
) -> CanarySettings:
    """Build a snapshot from volumes already read (so it matches their digests)."""
    return build_snapshot(settings_cls, volumes, init_kwargs)[0]


def build_snapshot(
    settings_cls: type[S],
    volumes: Mapping[str, VolumeSnapshot | None],
    init_kwargs: Mapping[str, Any],
    static: StaticValues | None = None,
) -> tuple[S, StaticValues | None]:
    """Build a snapshot from volumes already read, and say what the sources that cannot
    change gave. With ``static`` (what an earlier build of the same class and kwargs
    returned), only the volume sources are read: the reload path. Returns None for the
    static values when the class arranges its sources itself (every build is then full)."""
    ctx = BuildContext(settings_cls, volumes, static)
    token = enter_context(ctx)
    try:
        snapshot = settings_cls(**init_kwargs)
    finally:
        exit_context(token)
    if static is not None and reuses_static_values(settings_cls):
        return snapshot, static
    return snapshot, StaticValues.captured(ctx)


def reuses_static_values(settings_cls: type[CanarySettings]) -> bool:
    """Whether a reload of ``settings_cls`` may read only its volume sources: it keeps
    canaryconf's order of sources (no override of ``settings_customise_sources``) and uses
    none of pydantic-settings' features that act on the merged values (CLI parsing, partial
    updates of nested defaults)."""

    def compute() -> bool:
        config = settings_cls.model_config
        return (
            not places_own_sources(settings_cls)
            and not config.get("cli_parse_args")
            and config.get("cli_settings_source") is None
            and not config.get("nested_model_default_partial_update")
        )

    return class_memo(settings_cls, reuses_static_values, compute)


def _values_with_static(
    cls: type[CanarySettings], ctx: BuildContext, static: StaticValues
) -> dict[str, Any]:
    """The input pydantic validates: the volume sources' values merged with the static
    ones, in canaryconf's order, the way pydantic-settings merges its sources (from the
    lowest up, a higher source's dict merged into a lower one's key by key; anything else
    replaces). The sources below the volumes are merged once (:attr:`StaticValues.merged_below`)."""
    # The static values are copied (when there are any): a ``mode="before"`` validator
    # may change its input in place, and the next reload must see them as they were read.
    if static.init:
        ctx.record_static("init", static.init)
    layers = volume_values(cls, ctx)
    for name, data in static.below_volumes:
        if data:
            ctx.record_static(name, data)
    below = static.merged_below
    state: dict[str, Any] = copy.deepcopy(below) if below else {}
    for data in reversed(layers):
        if data:
            merge_into(state, data)
    if static.init:
        merge_into(state, copy.deepcopy(static.init))
    return state


def secret_fields(settings: CanarySettings | type[CanarySettings]) -> frozenset[str]:
    """Fields whose values are never shown: ``SecretStr``/``SecretBytes`` fields, fields
    marked secret, and (for an instance) fields whose value came from a Secret volume."""
    cls = settings if isinstance(settings, type) else type(settings)
    declared: frozenset[str] = class_memo(
        cls,
        secret_fields,
        lambda: frozenset(n for n, f in cls.model_fields.items() if is_secret_field(f)),
    )
    if isinstance(settings, type):
        return declared
    return declared | {name for name, o in origins_of(settings).items() if o.secret}


def restart_fields(settings_cls: type[CanarySettings]) -> frozenset[str]:
    """Fields marked ``restart_required``: their changes do not apply live."""
    return frozenset(
        name for name, field in settings_cls.model_fields.items() if field_mapping(field).restart
    )


def redacted_dump(settings: CanarySettings) -> dict[str, Any]:
    """``model_dump(mode="json")`` with every secret field replaced by ``**********``."""
    secrets = secret_fields(settings)
    dumped = settings.model_dump(mode="json")
    for name in secrets:
        if name in dumped and dumped[name] is not None:
            dumped[name] = REDACTED
    return dumped


def redacted_digest(settings: CanarySettings) -> str:
    """SHA-256 (hex) of the snapshot's :func:`redacted_dump` as sorted JSON: what every
    output publishes to tell versions apart. The volumes' own digest hashes Secret bytes,
    and a short secret can be found again from it by trying every value; this one changes
    with what is shown, never with a secret alone."""
    dumped = json.dumps(redacted_dump(settings), sort_keys=True, default=str)
    return hashlib.sha256(dumped.encode("utf-8")).hexdigest()


#: pydantic's own error types, whose messages never hold the input. A custom validator's
#: message (``value_error``, ``assertion_error``, or any ``PydanticCustomError`` type) can.
_BUILTIN_ERROR_TYPES = frozenset(get_args(ErrorType)) - {"value_error", "assertion_error"}


def _is_builtin_message(error_type: str) -> bool:
    return error_type in _BUILTIN_ERROR_TYPES


def _has_secrets(cls: type[CanarySettings], ctx: BuildContext) -> bool:
    return bool(secret_fields(cls)) or any(o.secret for o in ctx.origins.values())


def _validator_error(
    cls: type[CanarySettings], exc: Exception, ctx: BuildContext
) -> SettingsValidationError:
    """A validator's own exception as a problem that names its type and the user's function
    that raised it (never canaryconf's or pydantic's internals, never the message)."""
    where = ""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if not _is_library_file(frame.filename):
            where = f" in {frame.name} ({os.path.basename(frame.filename)}:{frame.lineno})"
            break
    reason = (
        f"a validator raised {type(exc).__name__}{where}"
        " (message withheld: it may quote a secret value)"
    )
    problem = FieldProblem(field=cls.__name__, reason=reason)
    return SettingsValidationError(cls.__name__, [*ctx.problems, problem])


_LIBRARY_DIRS = tuple(
    os.path.dirname(os.path.abspath(path))
    for path in (pydantic.__file__, pydantic_core.__file__, pydantic_settings.__file__, __file__)
    if path
)


def _is_library_file(filename: str) -> bool:
    path = os.path.abspath(filename)
    return any(path.startswith(d + os.sep) for d in _LIBRARY_DIRS)


def _safe_message(error: Any) -> bool:
    """Whether pydantic's message of ``error`` cannot quote the input: one of pydantic's own
    error types whose context, if any, holds only numbers (``string_too_long``'s
    ``max_length``). Context text (a union tag, a UUID parser's complaint, a pattern) can
    come from the input, and custom validators' messages can say anything."""
    if not _is_builtin_message(error["type"]):
        return False
    context = error.get("ctx") or {}
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in context.values())


def _settings_error(
    cls: type[CanarySettings], exc: ValidationError, ctx: BuildContext
) -> SettingsValidationError:
    origins = ctx.origins
    secrets = secret_fields(cls) | {name for name, o in origins.items() if o.secret}
    names = field_names_by_key(cls)
    problems = list(ctx.problems)
    already = {p.field for p in problems}
    for error in exc.errors(include_url=False, include_context=True, include_input=False):
        loc = error["loc"]
        top = names.get(str(loc[0]), str(loc[0])) if loc else ""
        if loc:
            loc = (top, *loc[1:])
        if top in already:
            continue  # its value never reached pydantic: the first problem says why
        origin = origins.get(top)
        reason = error["msg"]
        # A model-level validator (empty ``loc``) can read every field, secrets included.
        if top in secrets or (not loc and secrets):
            # Below a secret field's name, the location is data too: a dict key, a tagged
            # union's tag. Only the field name is shown.
            loc = loc[:1]
            if not _safe_message(error):
                reason = f"{error['type']} (message withheld: secret field)"
        problems.append(
            FieldProblem(
                field=".".join(str(part) for part in loc) or cls.__name__,
                reason=reason,
                source=origin.source if origin else None,
                key=origin.key if origin else None,
                line=origin.line if origin else None,
            )
        )
    return SettingsValidationError(cls.__name__, problems)
