"""canaryconf's fuzz targets: each takes arbitrary bytes and raises AssertionError when
canaryconf misbehaves; any other exception that escapes is a crash too.

- :func:`parse_map_target`: :func:`canaryconf.parse_map` on the bytes. Only
  :class:`~canaryconf.DownwardAPIFormatError` may escape; the bytes and ``str`` paths,
  the fast paths and the line-by-line reference parser must agree; what parses renders
  back (:func:`~canaryconf.format_map`) to a file that parses to the same map; an error
  names a line that exists and a key that is in the file.
- :func:`volume_target`: the bytes become the files of a downwardAPI, a ConfigMap and a
  Secret volume (written by :class:`~canaryconf.testing.KubeletWriter`, see
  :func:`split_volume_input`), read with :func:`~canaryconf.read_volume`, validated by a
  :class:`~canaryconf.CanarySettings` subclass and reloaded by a
  :class:`~canaryconf.LiveSettings`. Only :class:`~canaryconf.CanaryConfError` subclasses
  may escape, no reload may log an unexpected error, and a distinctive Secret value
  never shows in a repr, an error or a log record.

atheris runs them (``fuzz_parse_map.py``, ``fuzz_volume.py``); ``tests/test_fuzz_corpus.py``
runs them without atheris over the fixed corpus in ``tests/corpus/``.
"""

from __future__ import annotations

import atexit
import datetime
import logging
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from canaryconf import (
    CanaryConfError,
    CanaryConfigDict,
    CanarySettings,
    DownwardAPIFormatError,
    LiveSettings,
    RolloutInfo,
    annotation,
    configmap,
    format_map,
    label,
    live,
    parse_map,
    pod_field,
    read_volume,
    redacted_dump,
    resource,
    secret,
)
from canaryconf.downward import _parse_slow
from canaryconf.testing import KubeletWriter

__all__ = ["parse_map_target", "split_volume_input", "volume_target"]

# -- parse_map ----------------------------------------------------------------------------


def _reference(text: str) -> dict[str, str] | None:
    """The line-by-line reference parser, with parse_map's normalisation (BOM, one
    trailing newline); None when it rejects the text."""
    text = text.removeprefix("\ufeff")
    if text.endswith("\n"):
        text = text[:-1].removesuffix("\r")
    if not text:
        return {}
    try:
        return _parse_slow(text, None)
    except DownwardAPIFormatError:
        return None


def _check_error(error: DownwardAPIFormatError, data: bytes) -> None:
    lines = data.count(b"\n") + 1
    assert error.line is None or 1 <= error.line <= lines, (error.line, lines)
    if error.key is not None:
        assert isinstance(error.key, str)
        assert error.key.encode("utf-8", "surrogateescape") + b"=" in data, error.key


def parse_map_target(data: bytes) -> None:
    """Parse ``data`` as a label/annotation file, every way canaryconf can."""
    try:
        parsed: dict[str, str] | None = parse_map(data, source="fuzz")
    except DownwardAPIFormatError as error:
        _check_error(error, data)
        parsed = None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        assert parsed is None, "a file that is not UTF-8 parsed"
        return
    try:
        from_text: dict[str, str] | None = parse_map(text)
    except DownwardAPIFormatError:
        from_text = None
    assert from_text == parsed, "bytes and str parse differently"
    assert _reference(text) == parsed, "a fast path disagrees with the reference parser"
    if parsed is None:
        return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in parsed.items())
    rendered = format_map(parsed)
    assert parse_map(rendered) == parsed, "format_map output does not parse back"
    assert parse_map(rendered.encode("utf-8")) == parsed


# -- volumes and settings -----------------------------------------------------------------

PREFIX = "fuzz.example.com/"
SEPARATOR = b"\xff\xfe"
FILE_CAP = 4096
VOLUME_CAP = 16384
#: A Secret value this distinctive cannot turn up in a message by chance.
_DISTINCTIVE = re.compile(r"(?=[A-Za-z0-9]*[0-9])(?=[A-Za-z0-9]*[A-Za-z])[A-Za-z0-9]{16,}")


class Nested(BaseModel):
    enabled: bool = False
    weight: int = 0


def split_volume_input(data: bytes) -> tuple[dict[str, bytes], dict[str, bytes], dict[str, bytes]]:
    """The payloads of the downwardAPI, ConfigMap and Secret volumes in ``data``.

    The first byte says which files exist (bit 0 annotations, 1 labels, 2 the ConfigMap
    file ``replicas``, 3 the Secret file ``token``, 4 the downward file ``name``, 5
    ``limits.cpu``); the rest, split on ``b"\\xff\\xfe"``, gives their contents in that
    order (missing parts are empty).
    """
    flags = data[0] if data else 0xFF
    parts = data[1:].split(SEPARATOR, 5)
    parts += [b""] * (6 - len(parts))
    annotations, labels, replicas, token, name, cpu = parts
    downward: dict[str, bytes] = {}
    if flags & 1:
        downward["annotations"] = annotations
    if flags & 2:
        downward["labels"] = labels
    if flags & 16:
        downward["name"] = name
    if flags & 32:
        downward["limits.cpu"] = cpu
    configmaps = {"replicas": replicas} if flags & 4 else {}
    secrets = {"token": token} if flags & 8 else {}
    return downward, configmaps, secrets


class _Volumes:
    """Three volume directories and a LiveSettings over them, made on first use."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="canaryconf-fuzz-"))
        atexit.register(shutil.rmtree, self.root, True)
        self.downward = KubeletWriter(self.root / "podinfo", seed=0)
        self.configmaps = KubeletWriter(self.root / "config", seed=1)
        self.secrets = KubeletWriter(self.root / "secrets", seed=2)
        for writer in (self.downward, self.configmaps, self.secrets):
            writer.write({})
        self.settings_cls = _settings_class(self.root)
        self.live: LiveSettings[Any] = live(self.settings_cls)
        self.records: list[logging.LogRecord] = []
        handler = logging.Handler(logging.DEBUG)
        handler.emit = self.records.append  # type: ignore[method-assign]
        logging.getLogger("canaryconf").addHandler(handler)


def _settings_class(root: Path) -> type[CanarySettings]:
    class Fuzzed(CanarySettings):
        model_config = CanaryConfigDict(
            downward_api_dir=str(root / "podinfo"),
            configmap_dirs=[str(root / "config")],
            secrets_dirs=[str(root / "secrets")],
            annotation_prefix=PREFIX,
            max_file_bytes=FILE_CAP,
            max_volume_bytes=VOLUME_CAP,
        )

        color: str = annotation("color", default="blue")
        ratio: float = annotation("ratio", default=0.0, ge=0, le=1)
        flags: dict[str, bool] = annotation("flags", default_factory=dict)
        items: list[int] = annotation("items", default_factory=list)
        nested: Nested = annotation("nested", default_factory=Nested)
        either: list[str] | str = annotation("either", default="")
        when: datetime.datetime | None = annotation("when", default=None)
        api_key: SecretStr = annotation("api-key", default=SecretStr(""))
        tier: str = label("tier", default="web")
        rollout: RolloutInfo = RolloutInfo()
        replicas: int = configmap("replicas", default=1)
        token: SecretStr = secret("token", default=SecretStr(""))
        pod_name: str = pod_field("metadata.name", default="")
        cpu: int = resource("limits.cpu", default=1)

    return Fuzzed


_volumes: _Volumes | None = None


def _distinctive_secret(
    downward: dict[str, bytes], configmaps: dict[str, bytes], secrets: dict[str, bytes]
) -> str | None:
    """The Secret value, when it is distinctive and appears nowhere else in the input."""
    raw = secrets.get("token", b"")
    try:
        value = raw.decode("utf-8").removesuffix("\n")
    except UnicodeDecodeError:
        return None
    if _DISTINCTIVE.fullmatch(value) is None:
        return None
    elsewhere = b"".join([*downward.values(), *configmaps.values()])
    return None if value.encode() in elsewhere else value


def volume_target(data: bytes) -> None:
    """Write ``data`` into three volumes; read, validate and reload them."""
    global _volumes
    if _volumes is None:
        _volumes = _Volumes()
    volumes = _volumes
    downward, configmaps, secrets = split_volume_input(data)
    volumes.downward.write(downward)
    volumes.configmaps.write(configmaps)
    volumes.secrets.write(secrets)
    volumes.records.clear()
    shown: list[str] = []
    # What the last input left applied may be shown (a diff's old values): a Secret value
    # that was in it, in a field that is not secret, does not count as a leak.
    before = repr(redacted_dump(volumes.live.current))

    for directory in (volumes.downward.path, volumes.configmaps.path, volumes.secrets.path):
        try:
            snapshot = read_volume(directory, max_file_bytes=FILE_CAP)
        except CanaryConfError as error:
            shown.append(str(error))
        else:
            shown.append(repr(snapshot))
    try:
        settings = volumes.settings_cls()
    except CanaryConfError as error:
        shown += [str(error), repr(error)]
    else:
        shown += [repr(settings), str(redacted_dump(settings)), repr(settings.origins)]
    result = volumes.live.reload()
    assert result.status in ("applied", "unchanged", "failed"), result.status
    if result.failed:
        assert isinstance(result.error, CanaryConfError), repr(result.error)
    shown += [repr(result), repr(volumes.live), str(result.error)]
    if result.change is not None:
        shown.append(repr(result.change.diff()))
    unexpected = [r for r in volumes.records if r.levelno >= logging.ERROR]
    assert not unexpected, [r.getMessage() for r in unexpected]
    shown += [r.getMessage() for r in volumes.records]
    token = _distinctive_secret(downward, configmaps, secrets)
    if token is not None and token not in before:
        leaks = [text for text in shown if token in text]
        assert not leaks, f"a Secret value was shown in {leaks[0][:300]!r}"
