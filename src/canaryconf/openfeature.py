"""Feature flags through OpenFeature, served from live settings (extra ``canaryconf[openfeature]``).

:class:`CanaryConfProvider` is an OpenFeature provider backed by a
:class:`~canaryconf.LiveSettings`. It resolves two kinds of flags, both from the current
snapshot, so one evaluation never mixes two versions of the settings:

- **typed fields**: the flag key ``new-checkout`` (or ``new_checkout``) resolves the field
  ``new_checkout``; reason ``STATIC``, variant the value's JSON form (``"true"``, ``"42"``,
  the string itself). A value of another type gives ``TYPE_MISMATCH``, an unknown key
  ``FLAG_NOT_FOUND``, a field that is None the caller's default (reason ``DEFAULT``).
  Secret fields are never flags (a flagd document read from a Secret is not served either).
- **flagd flag definitions**: a field typed :class:`FlagdDefinitions` holds a flagd flags
  document (JSON, from an annotation or a ConfigMap key). Its flags are evaluated by the
  flagd evaluator core that the OpenFeature project publishes (``openfeature-flagd-core``):
  JSONLogic targeting, ``fractional``, ``sem_ver``, ``starts_with``/``ends_with``, ``$ref``
  evaluators, flag and flag-set metadata. A flagd flag shadows a typed field of the same key.

A flagd document that does not validate (against flagd's schema, a ``defaultVariant`` that
is not one of the flag's ``variants``, variants of mixed types, targeting with an unknown
operator or a ``$ref`` to no evaluator) makes the whole settings version invalid: the last
good snapshot stays and ``reload_failed`` is sent, as for any other field.

The evaluation context of a flagd flag also holds the pod's rollout facts under
``$canaryconf`` (``{"var": "$canaryconf.role"}`` in a rule):

=============================== ===========================================================
``$canaryconf.role``            the rollout role (``canary``, ``stable``...), from the
                                settings' :class:`~canaryconf.RolloutInfo` field
``$canaryconf.podTemplateHash`` the ``rollouts-pod-template-hash`` label
``$canaryconf.namespace``       the field declared ``pod_field("metadata.namespace")``
``$canaryconf.podName``         the field declared ``pod_field("metadata.name")``
=============================== ===========================================================

A fact the settings do not provide is absent (``var`` gives null). The caller's context
cannot override them.

Events: ``PROVIDER_READY`` when the SDK has initialized the provider;
``PROVIDER_CONFIGURATION_CHANGED`` after each applied change that touched a flag, with
``flags_changed`` listing exactly those keys (a typed field under both spellings; a flagd
flag whose definition, evaluators or merged metadata changed; a flagd flag that reads
``$canaryconf`` when a rollout fact changed); ``PROVIDER_STALE`` when a new version was
rejected (the last good flags keep being served; the message says why, never with a
value), and ``PROVIDER_READY`` again once a version is applied or the volume is back at the
applied one. ``PROVIDER_ERROR`` is never sent: evaluation never stops working. A provider
set while the volume holds a rejected version starts ``READY`` all the same (the SDK sends
that event itself), serving the last good flags.

>>> import tempfile
>>> from openfeature import api
>>> from canaryconf import CanaryConfigDict, CanarySettings, annotation, live
>>> from canaryconf.testing import KubeletWriter, pod_files
>>> vol = tempfile.mkdtemp()
>>> _ = KubeletWriter(vol).write(pod_files(annotations={"new-checkout": "true"}))
>>> class Settings(CanarySettings):
...     model_config = CanaryConfigDict(downward_api_dir=vol)
...     new_checkout: bool = annotation("new-checkout", default=False)
>>> api.set_provider_and_wait(CanaryConfProvider(live(Settings)))
>>> api.get_client().get_boolean_value("new-checkout", False)
True
>>> api.clear_providers()
"""

from __future__ import annotations

import copy
import json
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
    model_serializer,
    model_validator,
)
from pydantic_core import (
    InitErrorDetails,
    PydanticCustomError,
    PydanticSerializationError,
    ValidationError,
)
from pydantic_core import to_jsonable_python as _jsonable

try:
    from openfeature.contrib.tools.flagd.core import FlagdCore
    from openfeature.contrib.tools.flagd.core.targeting.targeting import OPERATORS
    from openfeature.evaluation_context import EvaluationContext
    from openfeature.event import ProviderEventDetails
    from openfeature.exception import FlagNotFoundError, OpenFeatureError, TypeMismatchError
    from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType, Reason
    from openfeature.provider import AbstractProvider, Metadata
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "canaryconf.openfeature needs openfeature-sdk and openfeature-flagd-core:"
        " pip install 'canaryconf[openfeature]'"
    ) from exc

from canaryconf import signals
from canaryconf._fields import field_mapping
from canaryconf._live import LiveSettings
from canaryconf.change import Change, ReloadResult
from canaryconf.rollout import RolloutInfo
from canaryconf.settings import CanarySettings, secret_fields

__all__ = ["CONTEXT_KEY", "CanaryConfProvider", "FlagdDefinitions", "FlagdFlag"]

logger = logging.getLogger("canaryconf")

#: The evaluation-context attribute holding the pod's rollout facts.
CONTEXT_KEY = "$canaryconf"

T = TypeVar("T")
_FlagKind = Literal["boolean", "string", "integer", "float", "object"]
_MetadataValue = StrictBool | StrictInt | StrictFloat | StrictStr
_Key = Annotated[str, StringConstraints(min_length=1)]
#: JSONLogic operations that json_logic's ``apply`` handles itself, not through OPERATORS.
_SPECIAL_FORMS = frozenset(
    {"if", "?:", "and", "or", "filter", "reduce", "map", "all", "some", "none"}
)


def _variant_kind(value: Any) -> str | None:
    """The flagd schema's type of a variant value (None: no JSON value flagd accepts)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, dict):
        return "object"
    return None


class FlagdFlag(BaseModel):
    """One flag of a flagd document: ``state``, ``variants`` (all booleans, all strings, all
    numbers or all objects), ``defaultVariant`` (one of the variants, or null for the
    caller's default), ``targeting`` (JSONLogic) and ``metadata``."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", populate_by_name=True, serialize_by_alias=True
    )

    state: Literal["ENABLED", "DISABLED"]
    variants: dict[_Key, Any] = Field(min_length=1)
    default_variant: StrictStr | None = Field(None, alias="defaultVariant")
    targeting: dict[str, Any] | None = None
    metadata: dict[_Key, _MetadataValue] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_variants(self) -> FlagdFlag:
        kinds = {_variant_kind(value) for value in self.variants.values()}
        if None in kinds or len(kinds) != 1:
            raise PydanticCustomError(
                "flagd_variants",
                "variants must be all booleans, all strings, all numbers or all objects",
            )
        if self.default_variant is not None and self.default_variant not in self.variants:
            raise PydanticCustomError(
                "flagd_default_variant",
                "defaultVariant {variant} is not one of the variants ({names})",
                {
                    "variant": json.dumps(self.default_variant),
                    "names": ", ".join(json.dumps(n) for n in self.variants),
                },
            )
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if data.get("targeting") is None:
            data.pop("targeting", None)
        return data


class FlagdDefinitions(BaseModel):
    """A flagd flag-definition document, validated and ready to evaluate.

    Type a settings field with it to take a flagd document from an annotation or a
    ConfigMap key (JSON text); :class:`CanaryConfProvider` evaluates its flags. A document
    that does not validate makes the settings version invalid, with an error naming the
    file, line and key it came from and the path inside the document::

        flags.flags.new-checkout (podinfo/annotations, line 3, key 'shop.example.com/flags'):
          defaultVariant "of" is not one of the variants ("on", "off")

    Two instances are equal when their documents are (so an unchanged document is no
    change).

    >>> doc = FlagdDefinitions.model_validate_json(
    ...     '{"flags": {"new-checkout": {"state": "ENABLED",'
    ...     ' "variants": {"on": true, "off": false}, "defaultVariant": "off"}}}')
    >>> sorted(doc.flags), doc.flags["new-checkout"].default_variant
    (['new-checkout'], 'off')
    """

    model_config = ConfigDict(
        frozen=True, extra="ignore", populate_by_name=True, serialize_by_alias=True
    )

    flags: dict[_Key, FlagdFlag]
    evaluators: dict[_Key, dict[str, Any]] = Field(default_factory=dict, alias="$evaluators")
    metadata: dict[_Key, _MetadataValue] = Field(default_factory=dict)

    _core: FlagdCore = PrivateAttr()
    _canonical: str = PrivateAttr()
    #: flag key -> canonical JSON of what decides its evaluation ($refs resolved,
    #: flag-set metadata merged): two documents evaluate a flag alike when these are equal.
    _effective: dict[str, str] = PrivateAttr()
    #: flags whose targeting reads the rollout facts ($canaryconf...).
    _reads_facts: frozenset[str] = PrivateAttr()

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        if isinstance(data, (str, bytes, bytearray)):
            try:
                return json.loads(data)
            except ValueError as exc:
                raise PydanticCustomError(
                    "json_invalid", "not a JSON document: {reason}", {"reason": _json_reason(exc)}
                ) from None
        return data

    @model_validator(mode="after")
    def _compile(self) -> FlagdDefinitions:
        problems: list[InitErrorDetails] = []
        resolved: dict[str, Any] = {}
        for key, flag in self.flags.items():
            targeting = _resolve_refs(flag.targeting, self.evaluators)
            resolved[key] = targeting
            for path, problem in _targeting_problems(targeting):
                problems.append(
                    InitErrorDetails(
                        type=problem, loc=("flags", key, "targeting", *path), input=None
                    )
                )
        if problems:
            raise ValidationError.from_exception_data(type(self).__name__, problems)
        core = FlagdCore()
        # by_alias spelled out: ``serialize_by_alias`` in the config needs pydantic 2.11.
        document = self.model_dump(mode="json", by_alias=True)
        try:
            core.set_flags(copy.deepcopy(document))
        except OpenFeatureError as exc:  # a rule of the core's that the checks above missed
            raise PydanticCustomError(
                "flagd_document",
                "the flagd evaluator rejected the document: {reason}",
                {"reason": exc.error_message or type(exc).__name__},
            ) from None
        self._core = core
        self._canonical = _canonical(document)
        self._effective = {
            key: _canonical(
                {
                    "flag": flag.model_dump(
                        mode="json", by_alias=True, exclude={"targeting", "metadata"}
                    ),
                    "targeting": resolved[key],
                    "metadata": {**self.metadata, **flag.metadata},
                }
            )
            for key, flag in self.flags.items()
        }
        self._reads_facts = frozenset(
            key for key, targeting in resolved.items() if _reads_facts(targeting)
        )
        return self

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FlagdDefinitions):
            return NotImplemented
        return self._canonical == other._canonical

    def __hash__(self) -> int:
        return hash(self._canonical)

    def changed_flags(self, other: FlagdDefinitions | None) -> frozenset[str]:
        """Keys of the flags that evaluate differently here than in ``other`` (added,
        removed, or with another definition, evaluator or merged metadata)."""
        before = other._effective if other is not None else {}
        after = self._effective
        return frozenset(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def _json_reason(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} (line {exc.lineno}, column {exc.colno})"
    return type(exc).__name__


def _canonical(document: Any) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def _resolve_refs(node: Any, evaluators: Mapping[str, Any]) -> Any:
    """``{"$ref": name}`` replaced by evaluator ``name``, one evaluator after the other in
    document order: what the flagd core does to the document's text before parsing it, so a
    ``$ref`` left over here is one the core leaves unresolved too."""
    for name, rule in evaluators.items():
        node = _substitute(node, name, rule)
    return node


def _substitute(node: Any, name: str, rule: Any) -> Any:
    if isinstance(node, dict):
        if len(node) == 1 and node.get("$ref") == name:
            return copy.deepcopy(rule)
        return {k: _substitute(v, name, rule) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(item, name, rule) for item in node]
    return node


def _targeting_problems(
    node: Any, path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], PydanticCustomError]]:
    """Operations the evaluator would not know, found without evaluating anything: JSONLogic
    reads a one-key object as an operation, anything else as data."""
    if isinstance(node, list):
        for index, item in enumerate(node):
            yield from _targeting_problems(item, (*path, index))
        return
    if not isinstance(node, dict) or len(node) != 1:
        return
    ((op, args),) = node.items()
    if op == "$ref":
        yield (
            path,
            PydanticCustomError(
                "flagd_ref", "$ref to {name}, which is not one of the $evaluators", {"name": args}
            ),
        )
        return
    if op not in _SPECIAL_FORMS and op not in OPERATORS:
        yield (
            path,
            PydanticCustomError(
                "flagd_operator", "unknown targeting operator {op}", {"op": json.dumps(op)}
            ),
        )
    yield from _targeting_problems(args, (*path, op))


def _reads_facts(node: Any) -> bool:
    if isinstance(node, dict):
        if len(node) == 1 and "var" in node:
            name = node["var"][0] if isinstance(node["var"], list) and node["var"] else node["var"]
            if isinstance(name, str) and name.split(".", 1)[0] == CONTEXT_KEY:
                return True
        return any(_reads_facts(v) for v in node.values())
    if isinstance(node, list):
        return any(_reads_facts(item) for item in node)
    return False


# -- the provider ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Typed:
    """A typed field as a flag: its JSON value and variant, computed once per snapshot."""

    value: Any
    variant: str | None


@dataclass(frozen=True)
class _Index:
    """What one snapshot offers as flags; rebuilt when the snapshot changes."""

    snapshot: CanarySettings | None
    flagd: tuple[FlagdDefinitions, ...]
    #: (flag keys, evaluator) of each of ``flagd``: read once here, since a private
    #: attribute of a pydantic model costs a __getattr__ call at each evaluation
    evaluators: tuple[tuple[Mapping[str, FlagdFlag], FlagdCore], ...]
    typed: Mapping[str, _Typed]
    facts: Mapping[str, str]


_EMPTY = _Index(None, (), (), {}, {})


class CanaryConfProvider(AbstractProvider):
    """An OpenFeature provider serving the flags of a :class:`~canaryconf.LiveSettings`.

    Register it with ``api.set_provider(CanaryConfProvider(settings))``; keep the settings
    watched (``settings.start()`` or ``async with settings.watching()``) and flags follow
    every applied change. See the module documentation for which keys resolve, the
    ``$canaryconf`` context and the events.

    >>> from openfeature import api
    >>> from canaryconf import CanarySettings, live
    >>> class Settings(CanarySettings):
    ...     checkout_flow: str = "classic"
    >>> api.set_provider_and_wait(CanaryConfProvider(live(Settings)))
    >>> details = api.get_client().get_string_details("checkout-flow", "none")
    >>> details.value, details.variant, str(details.reason)
    ('classic', 'classic', 'STATIC')
    >>> api.clear_providers()
    """

    def __init__(self, live: LiveSettings[Any], *, name: str = "canaryconf") -> None:
        super().__init__()
        self._live = live
        self._metadata = Metadata(name=name)
        self._index = _EMPTY
        self._index_lock = threading.Lock()
        self._stale = False
        self._connected = False
        cls = live.settings_class
        self._keys: dict[str, str] = {}
        for field_name in cls.model_fields:
            self._keys.setdefault(field_name, field_name)
            self._keys.setdefault(field_name.replace("_", "-"), field_name)
        self._fact_fields: dict[str, str] = {}
        for field_name, info in cls.model_fields.items():
            mapping = field_mapping(info)
            if mapping.source == "pod_field" and mapping.key in ("name", "namespace"):
                fact = "podName" if mapping.key == "name" else "namespace"
                self._fact_fields.setdefault(fact, field_name)

    # -- lifecycle ---------------------------------------------------------------------

    def get_metadata(self) -> Metadata:
        return self._metadata

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        """Follow the settings' reloads (called by the SDK when the provider is set)."""
        if not self._connected:
            signals.reloaded.connect(self._on_reloaded, sender=self._live, weak=False)
            self._connected = True
        # Set while the volume holds a rejected version: the SDK still reports READY
        # (it sends that event itself once this returns), and READY comes again with
        # the next valid version.
        self._stale = self._live.last_error is not None
        self._current()

    def shutdown(self) -> None:
        """Stop following reloads (called by the SDK when the provider is replaced or the
        API shuts down). The settings themselves keep running."""
        if self._connected:
            # From every sender: blinker's disconnect from one sender keeps holding a
            # receiver connected with weak=False. This bound method is this provider's only.
            signals.reloaded.disconnect(self._on_reloaded)
            self._connected = False

    def _on_reloaded(self, sender: Any, *, result: ReloadResult[Any], **_: Any) -> None:
        if result.status == "failed":
            if not result.repeated:
                self._stale = True
                self.emit_provider_stale(
                    ProviderEventDetails(
                        message=f"new settings version rejected; serving the last good"
                        f" flags: {result.error}"
                    )
                )
            return
        if self._stale and self._live.last_error is None:
            self._stale = False
            self.emit_provider_ready(ProviderEventDetails(message="settings valid again"))
        if result.change is not None:
            changed = self.flags_changed(result.change)
            if changed:
                metadata: dict[str, bool | str | int | float] = {}
                if result.change.generation is not None:
                    metadata["generation"] = result.change.generation
                self.emit_provider_configuration_changed(
                    ProviderEventDetails(flags_changed=sorted(changed), metadata=metadata)
                )

    def flags_changed(self, change: Change[Any]) -> frozenset[str]:
        """The flag keys whose value or definition ``change`` changed (see the module
        documentation): what ``PROVIDER_CONFIGURATION_CHANGED`` lists."""
        old, new = self._build_index(change.old), self._build_index(change.new)
        keys: set[str] = set()
        for name in change.fields:
            before, after = getattr(change.old, name), getattr(change.new, name)
            if isinstance(before, FlagdDefinitions) or isinstance(after, FlagdDefinitions):
                keys |= _flagd_or_none(after).changed_flags(_flagd_or_none(before))
                continue
            if name in old.typed or name in new.typed:
                keys.update(k for k, field_name in self._keys.items() if field_name == name)
        if old.facts != new.facts:
            for definitions in (*old.flagd, *new.flagd):
                keys |= definitions._reads_facts
        return frozenset(keys)

    # -- evaluation --------------------------------------------------------------------

    def _current(self) -> _Index:
        index = self._index
        if index.snapshot is self._live.current:
            return index
        with self._index_lock:
            snapshot = self._live.current
            if self._index.snapshot is not snapshot:
                self._index = self._build_index(snapshot)
            return self._index

    def _build_index(self, snapshot: CanarySettings) -> _Index:
        secrets = secret_fields(snapshot)
        flagd: list[FlagdDefinitions] = []
        typed: dict[str, _Typed] = {}
        facts: dict[str, str] = {}
        for name in type(snapshot).model_fields:
            if name in secrets:  # never a flag, not even a flagd document from a Secret
                continue
            value = getattr(snapshot, name)
            if isinstance(value, FlagdDefinitions):
                flagd.append(value)
                continue
            if isinstance(value, RolloutInfo) and "role" not in facts:
                for fact, attr in (
                    ("role", value.role),
                    ("podTemplateHash", value.pod_template_hash),
                ):
                    if attr is not None:
                        facts[fact] = attr
            entry = _typed(value)
            if entry is not None:
                typed[name] = entry
        for fact, field_name in self._fact_fields.items():
            value = getattr(snapshot, field_name)
            if isinstance(value, str):
                facts[fact] = value
        evaluators = tuple((d.flags, d._core) for d in flagd)
        return _Index(snapshot, tuple(flagd), evaluators, typed, facts)

    def _resolve(
        self,
        kind: _FlagKind,
        flag_key: str,
        default_value: Any,
        evaluation_context: EvaluationContext | None,
    ) -> FlagResolutionDetails[Any]:
        index = self._current()
        for flags, core in index.evaluators:
            if flag_key in flags:
                return _evaluate(
                    core,
                    kind,
                    flag_key,
                    default_value,
                    facts=index.facts,
                    evaluation_context=evaluation_context,
                )
        field_name = self._keys.get(flag_key)
        typed = index.typed.get(field_name) if field_name is not None else None
        if typed is None:
            raise FlagNotFoundError(f"no flag {flag_key!r} in {type(index.snapshot).__name__}")
        value = typed.value
        if value is None:
            return FlagResolutionDetails(default_value, reason=Reason.DEFAULT)
        return FlagResolutionDetails(
            _as_kind(kind, value, flag_key), reason=Reason.STATIC, variant=typed.variant
        )

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        return self._resolve("boolean", flag_key, default_value, evaluation_context)

    def resolve_string_details(
        self,
        flag_key: str,
        default_value: str,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[str]:
        return self._resolve("string", flag_key, default_value, evaluation_context)

    def resolve_integer_details(
        self,
        flag_key: str,
        default_value: int,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[int]:
        return self._resolve("integer", flag_key, default_value, evaluation_context)

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        return self._resolve("float", flag_key, default_value, evaluation_context)

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[FlagValueType] | Mapping[str, FlagValueType],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[FlagValueType] | Mapping[str, FlagValueType]]:
        return self._resolve("object", flag_key, default_value, evaluation_context)


def _flagd_or_none(value: Any) -> FlagdDefinitions:
    if isinstance(value, FlagdDefinitions):
        return value
    return _NO_FLAGS


def _typed(value: Any) -> _Typed | None:
    try:
        plain = _jsonable(value)
    except PydanticSerializationError:  # a type with no JSON form is no flag
        return None
    return _Typed(plain, _variant_of(plain))


def _variant_of(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _as_kind(kind: _FlagKind, value: Any, flag_key: str) -> Any:
    """``value`` as the SDK expects a flag of ``kind``, or TYPE_MISMATCH."""
    if kind == "boolean" and isinstance(value, bool):
        return value
    if kind == "string" and isinstance(value, str):
        return value
    if kind == "integer" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind == "object" and isinstance(value, (dict, list)):
        return copy.deepcopy(value)  # the snapshot's own value must stay as it is
    raise TypeMismatchError(f"flag {flag_key!r} is not of type {kind}")


def _evaluate(
    core: FlagdCore,
    kind: _FlagKind,
    flag_key: str,
    default_value: Any,
    *,
    facts: Mapping[str, str],
    evaluation_context: EvaluationContext | None,
) -> FlagResolutionDetails[Any]:
    attributes = dict(evaluation_context.attributes) if evaluation_context is not None else {}
    attributes[CONTEXT_KEY] = (
        facts  # the evaluator copies the top level only; facts stay as they are
    )
    context = EvaluationContext(
        evaluation_context.targeting_key if evaluation_context is not None else None, attributes
    )
    if kind == "boolean":
        return core.resolve_boolean_value(flag_key, default_value, context)
    if kind == "string":
        return core.resolve_string_value(flag_key, default_value, context)
    if kind == "integer":
        return core.resolve_integer_value(flag_key, default_value, context)
    if kind == "float":
        return core.resolve_float_value(flag_key, default_value, context)
    return core.resolve_object_value(flag_key, default_value, context)


_NO_FLAGS = FlagdDefinitions(flags={})
