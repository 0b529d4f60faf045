"""A volume as the commands show it when no settings class is given: labels and annotations
parsed, every other file as it is; and two generic settings classes, so ``watch`` and
``sidecar`` get :func:`canaryconf.live`'s consistent reads, debounce and validation for
any volume: the downwardAPI one and those of every registered source kind given."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from canaryconf._cli.common import DOWNWARD_KEY
from canaryconf._errors import DownwardAPIFormatError
from canaryconf._fields import secret
from canaryconf.change import display
from canaryconf.downward import parse_map
from canaryconf.settings import CanaryConfigDict, CanarySettings
from canaryconf.sources.base import VolumeSource, config_value, registered_sources
from canaryconf.volume import VolumeSnapshot, read_volume

__all__ = [
    "VolumeContent",
    "VolumeDigests",
    "VolumeView",
    "content_class",
    "digests_class",
    "file_texts",
    "read_view",
]


@dataclass
class VolumeView:
    """One generation of a volume: parsed label/annotation maps and the other files."""

    path: str
    generation: str | None
    digest: str
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    errors: list[DownwardAPIFormatError] = field(default_factory=list)
    labels_file: str = "labels"
    annotations_file: str = "annotations"
    #: ``downwardAPI``, or the registered source kind that reads it (``configmap``...).
    kind: str = "downwardAPI"


def read_view(
    path: str,
    *,
    labels_file: str = "labels",
    annotations_file: str = "annotations",
    parse_maps: bool = True,
    kind: str = "downwardAPI",
) -> VolumeView:
    """Read ``path`` (one consistent generation). A malformed label or annotation file is
    left out and its error (file, line, key: never a value) recorded: its raw text can hold
    a secret annotation. Raises :class:`~canaryconf.VolumeError`."""
    snapshot = read_volume(path)
    view = VolumeView(
        path=path,
        generation=snapshot.generation,
        digest=snapshot.digest,
        labels_file=labels_file,
        annotations_file=annotations_file,
        kind=kind,
    )
    for name, data in snapshot.files.items():
        if parse_maps and name in (labels_file, annotations_file):
            try:
                parsed = parse_map(data, source=snapshot.file_path(name))
            except DownwardAPIFormatError as exc:
                view.errors.append(exc)
                continue
            if name == labels_file:
                view.labels = parsed
            else:
                view.annotations = parsed
        else:
            view.files[name] = data
    return view


def file_texts(view: VolumeView) -> dict[str, str]:
    """The view's plain files as text (JSON-quoted when not UTF-8)."""
    texts = {}
    for name, data in view.files.items():
        try:
            texts[name] = data.decode("utf-8")
        except UnicodeDecodeError:
            texts[name] = display(data)
    return texts


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


#: A volume besides the downwardAPI one, and which of its files are secret (None: all).
OtherVolume = tuple[str, frozenset[str] | None]


class _OtherVolumes(VolumeSource):
    """A source over the class's :attr:`_OneSourceSettings.other_volumes`, read through
    the shared build context (so a reload validates exactly the generation whose digest
    it reports); it gives no field by itself."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def _snapshots(self) -> list[tuple[str, frozenset[str] | None, VolumeSnapshot]]:
        cls = self.settings_cls
        assert issubclass(cls, _OneSourceSettings)
        found = []
        for directory, secret_files in cls.other_volumes:
            snapshot = self.context.volume(directory)
            if snapshot is not None:
                found.append((directory, secret_files, snapshot))
        return found


class _WholeVolumes(_OtherVolumes):
    """Every file of every volume of the class."""

    def __call__(self) -> dict[str, Any]:
        cls = self.settings_cls
        data: dict[str, Any] = {}
        downward = config_value(cls, "downward_api_dir")
        if downward is not None:
            labels_file = config_value(cls, "labels_file")
            annotations_file = config_value(cls, "annotations_file")
            for name, file in (("labels", labels_file), ("annotations", annotations_file)):
                found = self.context.downward_map(file)
                if found is not None:
                    data[name] = found[0]
            snapshot = self.context.volume(os.fspath(downward))
            if snapshot is not None:
                data["files"] = {
                    name: _text(content)
                    for name, content in snapshot.files.items()
                    if name not in (labels_file, annotations_file)
                }
        plain: dict[str, str] = {}
        secrets: dict[str, str] = {}
        for directory, secret_files, snapshot in self._snapshots():
            for name, content in snapshot.files.items():
                path = os.path.join(directory, name)
                if secret_files is None or name in secret_files:
                    secrets[path] = _digest(content)
                else:
                    plain[path] = _text(content)
        data["volumes"] = plain
        data["secrets"] = secrets
        return data


class _OneSourceSettings(CanarySettings):
    """Settings read by their ``volume_source`` alone (and init kwargs): no environment.

    They read ``downward_api_dir`` and :attr:`other_volumes`, each whole (no source kind's
    config key is set, so no kind reads a file of them selectively), and watch exactly
    those directories."""

    volume_source: ClassVar[type[VolumeSource]]
    other_volumes: ClassVar[tuple[OtherVolume, ...]] = ()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, cls.volume_source(settings_cls))

    @classmethod
    def volume_dirs(cls) -> list[str]:
        downward = config_value(cls, DOWNWARD_KEY)
        dirs = [] if downward is None else [os.fspath(downward)]
        dirs.extend(directory for directory, _ in cls.other_volumes)
        return list(dict.fromkeys(dirs))


class VolumeContent(_OneSourceSettings):
    """Everything in a podinfo volume and the volumes of the source kinds given: the
    settings ``watch`` follows when no settings class is given. The files a kind declares
    secret (every file of a Secret volume, of a projected one) are held as SHA-256
    digests only."""

    model_config: ClassVar[CanaryConfigDict] = CanaryConfigDict(
        frozen=True, extra="ignore", downward_api_dir=None
    )

    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    files: dict[str, str] = {}
    volumes: dict[str, str] = {}
    secrets: dict[str, str] = secret("secrets", default_factory=dict)

    #: Fields whose entries are shown as "changed", never with their values.
    SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset({"secrets"})

    volume_source: ClassVar[type[VolumeSource]] = _WholeVolumes


class _AllDigests(_OtherVolumes):
    def __call__(self) -> dict[str, Any]:
        digests = {}
        for directory, _, snapshot in self._snapshots():
            for name, content in snapshot.files.items():
                digests[os.path.join(directory, name)] = _digest(content)
        return {"files": digests}


class VolumeDigests(_OneSourceSettings):
    """The SHA-256 of every file of some volumes: what ``sidecar`` compares when no
    settings class is given (any content change is a change; no value is held in
    memory)."""

    model_config: ClassVar[CanaryConfigDict] = CanaryConfigDict(
        frozen=True, extra="ignore", downward_api_dir=None
    )

    # Marked secret so that canaryconf's own logs never show the digests either.
    files: dict[str, str] = secret("files", default_factory=dict)

    volume_source: ClassVar[type[VolumeSource]] = _AllDigests


def _generic_config(downward: str | None) -> CanaryConfigDict:
    config: dict[str, Any] = {
        "frozen": True,
        "extra": "ignore",
        "downward_api_dir": downward,
        "require_volumes": True,
    }
    for source in registered_sources():
        if source.config_key is not None and source.config_key != DOWNWARD_KEY:
            config[source.config_key] = []
    return cast(CanaryConfigDict, config)


def content_class(downward: str | None, others: Iterable[OtherVolume] = ()) -> type[VolumeContent]:
    """:class:`VolumeContent` reading the downwardAPI volume ``downward`` and ``others``
    (each with the files of it that are secret, None for all)."""
    namespace = {"model_config": _generic_config(downward), "other_volumes": tuple(others)}
    return type("VolumeContent", (VolumeContent,), namespace)


def digests_class(dirs: Sequence[str]) -> type[VolumeDigests]:
    """:class:`VolumeDigests` over ``dirs``."""
    others = tuple((directory, None) for directory in dict.fromkeys(dirs))
    namespace = {"model_config": _generic_config(None), "other_volumes": others}
    return type("VolumeDigests", (VolumeDigests,), namespace)
