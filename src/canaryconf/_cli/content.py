"""A volume as the commands show it when no settings class is given: labels and annotations
parsed, every other file as it is; and two generic settings classes, so ``watch`` and
``sidecar`` get :func:`canaryconf.live`'s consistent reads, debounce and validation for
any volume."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from canaryconf._errors import DownwardAPIFormatError
from canaryconf._fields import secret
from canaryconf.change import display
from canaryconf.downward import parse_map
from canaryconf.settings import CanaryConfigDict, CanarySettings
from canaryconf.sources.base import VolumeSource, as_dirs, config_value
from canaryconf.volume import VolumeSnapshot, read_volume

__all__ = ["VolumeContent", "VolumeDigests", "VolumeView", "file_texts", "read_view"]


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


def read_view(
    path: str,
    *,
    labels_file: str = "labels",
    annotations_file: str = "annotations",
    parse_maps: bool = True,
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


def _dirs(settings_cls: type[BaseSettings], name: str) -> list[str]:
    return as_dirs(config_value(settings_cls, name))


class _WholeVolumes(VolumeSource):
    """Every file of every volume of the class, through the shared build context (so a
    reload validates exactly the generation whose digest it reports)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def _snapshots(self, setting: str) -> list[tuple[str, VolumeSnapshot]]:
        found = []
        for directory in _dirs(self.settings_cls, setting):
            snapshot = self.context.volume(directory)
            if snapshot is not None:
                found.append((directory, snapshot))
        return found

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
        data["configmaps"] = {
            os.path.join(directory, name): _text(content)
            for directory, snapshot in self._snapshots("configmap_dirs")
            for name, content in snapshot.files.items()
        }
        data["secrets"] = {
            os.path.join(directory, name): _digest(content)
            for directory, snapshot in self._snapshots("secrets_dirs")
            for name, content in snapshot.files.items()
        }
        return data


class _OneSourceSettings(CanarySettings):
    """Settings read by their ``volume_source`` alone (and init kwargs): no environment."""

    volume_source: ClassVar[type[VolumeSource]]

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


class VolumeContent(_OneSourceSettings):
    """Everything in a podinfo volume (and the ConfigMap and Secret directories given):
    the settings ``watch`` follows when no settings class is given. Secret files are held
    as SHA-256 digests only."""

    model_config: ClassVar[CanaryConfigDict] = CanaryConfigDict(
        frozen=True, extra="ignore", downward_api_dir=None
    )

    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    files: dict[str, str] = {}
    configmaps: dict[str, str] = {}
    secrets: dict[str, str] = secret("secrets", default_factory=dict)

    #: Fields whose entries are shown as "changed", never with their values.
    SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset({"secrets"})

    volume_source: ClassVar[type[VolumeSource]] = _WholeVolumes


class _AllDigests(VolumeSource):
    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        digests = {}
        for directory in _dirs(self.settings_cls, "configmap_dirs"):
            snapshot = self.context.volume(directory)
            if snapshot is None:
                continue
            for name, content in snapshot.files.items():
                digests[os.path.join(directory, name)] = _digest(content)
        return {"files": digests}


class VolumeDigests(_OneSourceSettings):
    """The SHA-256 of every file of the volumes in ``configmap_dirs``: what ``sidecar``
    compares when no settings class is given (any content change is a change; no value
    is held in memory)."""

    model_config: ClassVar[CanaryConfigDict] = CanaryConfigDict(
        frozen=True, extra="ignore", downward_api_dir=None
    )

    # Marked secret so that canaryconf's own logs never show the digests either.
    files: dict[str, str] = secret("files", default_factory=dict)

    volume_source: ClassVar[type[VolumeSource]] = _AllDigests


def content_class(
    downward: str | None, configmaps: Sequence[str] = (), secrets: Sequence[str] = ()
) -> type[VolumeContent]:
    """:class:`VolumeContent` reading these directories."""
    config = CanaryConfigDict(
        frozen=True,
        extra="ignore",
        downward_api_dir=downward,
        configmap_dirs=list(configmaps),
        secrets_dirs=list(secrets),
        require_volumes=True,
    )
    return type("VolumeContent", (VolumeContent,), {"model_config": config})


def digests_class(dirs: Sequence[str]) -> type[VolumeDigests]:
    """:class:`VolumeDigests` over ``dirs``."""
    config = CanaryConfigDict(
        frozen=True,
        extra="ignore",
        downward_api_dir=None,
        configmap_dirs=list(dirs),
        require_volumes=True,
    )
    return type("VolumeDigests", (VolumeDigests,), {"model_config": config})
