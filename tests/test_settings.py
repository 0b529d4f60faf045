"""CanarySettings built from real volumes written the way the kubelet writes them."""

from __future__ import annotations

import copy
import doctest
import json
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

import pydantic
import pytest
from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_core import PydanticCustomError

import canaryconf
import canaryconf._errors
import canaryconf._fields
import canaryconf.change
import canaryconf.downward
import canaryconf.rollout
import canaryconf.settings
import canaryconf.testing
import canaryconf.volume
from canaryconf import (
    CanaryConfigDict,
    CanarySettings,
    DownwardAPIFormatError,
    RolloutInfo,
    SettingsValidationError,
    VolumeNotFoundError,
    annotation,
    configmap,
    label,
    pod_field,
    read_volume,
    redacted_dump,
    resource,
    restart_required,
    secret,
)
from canaryconf.settings import build_settings, restart_fields, secret_fields
from canaryconf.testing import KubeletWriter, pod_files

PREFIX = "canary.example.com/"


def _write_pod(
    writer: KubeletWriter,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    **files: str,
) -> None:
    writer.write(pod_files(labels=labels, annotations=annotations, extra=files))


def _exception_texts(exc: BaseException) -> str:
    """Everything an exception can show: its str and repr, its chain, and the traceback."""
    parts = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts += [str(current), repr(current)]
        parts += [str(p) for p in getattr(current, "problems", ())]
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


def _line_of(path: Path, key: str) -> int:
    lines = path.read_text().split("\n")
    return next(n for n, line in enumerate(lines, start=1) if line.startswith(f"{key}="))


# --------------------------------------------------------------------------------------------
# Field helpers and keys


def test_origins_live_with_the_snapshot(tmp_path: Path, podinfo: KubeletWriter) -> None:
    """Where a value came from stays with the snapshot through copies, in a
    subclass with private attributes of its own too, and never gets into its values."""
    _write_pod(podinfo, annotations={f"{PREFIX}db-url": "postgres://canary-db/app"})

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=podinfo.path, annotation_prefix=PREFIX)
        db_url: str = annotation("db-url", default="postgres://stable-db/app")
        tier: str = "web"

    class WithPrivate(Settings):
        _calls: list[str] = pydantic.PrivateAttr(default_factory=list)

    for cls in (Settings, WithPrivate):
        s = cls()
        source = str(podinfo.path / "annotations")
        assert s.origins["db_url"].source == source and "tier" not in s.origins
        assert s.model_dump() == {"db_url": "postgres://canary-db/app", "tier": "web"}
        copied = s.model_copy(update={"tier": "api"})
        assert copied.origins["db_url"].source == source
        for again in (copy.copy(s), copy.deepcopy(s)):
            assert again == s and again.origins == s.origins
        assert cls.model_construct(db_url="x").origins == {}
    private = WithPrivate()
    private._calls.append("one")
    assert private._calls == ["one"] and private.origins["db_url"].key == f"{PREFIX}db-url"


def test_helpers_take_values_from_their_sources(tmp_path: Path, podinfo: KubeletWriter) -> None:
    _write_pod(
        podinfo,
        labels={"role": "canary", "tier": "web"},
        annotations={f"{PREFIX}db-url": "postgres://canary-db/app"},
        **{"limits.cpu": "2", "mem": "64", "uid": "1234-abcd"},
    )
    KubeletWriter(tmp_path / "cm").write({"log-level": "debug"})
    KubeletWriter(tmp_path / "sec").write({"db-password": "hunter2"})

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(
            downward_api_dir=podinfo.path,
            annotation_prefix=PREFIX,
            configmap_dirs=[tmp_path / "cm"],
            secrets_dirs=[tmp_path / "sec"],
        )
        db_url: str = annotation("db-url", default="postgres://stable-db/app")
        role: str = label("role", default="stable")
        pod_name: str = pod_field("metadata.name", default="")
        namespace: str = pod_field("metadata.namespace", default="")
        uid: str = pod_field("metadata.uid", default="")
        tier: str = pod_field("metadata.labels['tier']", file="tier-file", default="none")
        cpu_limit: int = resource("limits.cpu", default=1)
        memory_mib: int = resource("limits.memory", file="mem", default=0)
        log_level: str = configmap("log-level", default="info")
        db_password: SecretStr = secret("db-password", default=SecretStr(""))

    s = Settings()

    assert s.db_url == "postgres://canary-db/app"
    assert s.role == "canary"
    assert s.pod_name == "app-6d8f7c9b5-x7k2p"
    assert s.namespace == "default"
    assert s.uid == "1234-abcd"
    assert s.tier == "none"  # no file "tier-file" in the volume
    assert s.cpu_limit == 2
    assert s.memory_mib == 64
    assert s.log_level == "debug"
    assert s.db_password.get_secret_value() == "hunter2"
    assert s.origins["db_url"].source == str(podinfo.path / "annotations")
    assert s.origins["db_url"].key == f"{PREFIX}db-url"
    assert s.origins["log_level"].source == str(tmp_path / "cm" / "log-level")
    assert "tier" not in s.origins


def test_pod_field_single_label_file(podinfo: KubeletWriter) -> None:
    _write_pod(podinfo, **{"tier": "web"})

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=podinfo.path)
        tier: str = pod_field("metadata.labels['tier']", default="none")

    assert Settings().tier == "web"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", None),
        (b"a\r\n", "a\r\n"),
        (b"web\n\n", "web\n\n"),
        (b" padded ", " padded "),
    ],
)
def test_pod_field_reads_the_file_exactly(
    podinfo: KubeletWriter, content: bytes, expected: str | None
) -> None:
    # The kubelet writes the value with no newline of its own: every byte is the value's.
    _write_pod(podinfo, **{"pem": content.decode()})

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=podinfo.path)
        value: str = pod_field("metadata.annotations['pem']", default="")

    assert Settings().value == (content.decode() if expected is None else expected)


def test_empty_single_key_file_means_absent(podinfo: KubeletWriter) -> None:
    # For metadata.labels['k'] of a pod without label k, the kubelet writes an empty file.
    podinfo.write(pod_files(extra={"tier": "", "replicas": b""}))

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=podinfo.path)
        tier: str = pod_field("metadata.labels['tier']", default="none")
        replicas: int = pod_field("metadata.annotations['replicas']", default=3)

    s = Settings()
    assert (s.tier, s.replicas) == ("none", 3)
    assert "tier" not in s.origins and "replicas" not in s.origins

    podinfo.write(pod_files(extra={"tier": "web", "replicas": b"5"}))
    assert (Settings().tier, Settings().replicas) == ("web", 5)


def test_single_key_file_with_invalid_utf8_decodes_as_go(podinfo: KubeletWriter) -> None:
    # A truncated 3-byte sequence is two bad bytes for Go's utf8.DecodeRune: two U+FFFD,
    # as parse_map gives for the same bytes in a map file.
    podinfo.write(pod_files(extra={"note": b"a\xe2\x82b\xff"}))

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=podinfo.path)
        note: str = pod_field("metadata.annotations['note']", default="")

    assert Settings().note == "a\ufffd\ufffdb\ufffd"
    # The map file holds the same bytes as Go escapes them.
    mapped = canaryconf.downward.parse_map(b'note="a\\xe2\\x82b\\xff"')
    assert mapped == {"note": Settings().note}


def test_pod_field_rejects_paths_that_cannot_be_files() -> None:
    with pytest.raises(ValueError, match=r"status\.podIP"):
        pod_field("status.podIP")


def test_plain_field_reads_prefixed_dashed_annotation(podinfo: KubeletWriter) -> None:
    _write_pod(podinfo, annotations={f"{PREFIX}max-connections": "50", "max-connections": "7"})

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=podinfo.path, annotation_prefix=PREFIX)
        max_connections: int = 10

    class Unprefixed(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=podinfo.path)
        max_connections: int = 10

    assert Settings().max_connections == 50
    assert Unprefixed().max_connections == 7


def test_annotation_key_with_a_slash_is_absolute(podinfo: KubeletWriter) -> None:
    _write_pod(
        podinfo,
        annotations={
            "other.example.com/weight": "30",
            f"{PREFIX}other.example.com/weight": "99",
            f"{PREFIX}local": "1",
        },
    )

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=podinfo.path, annotation_prefix=PREFIX)
        weight: int = annotation("other.example.com/weight", default=0)
        local: int = annotation("local", default=0)

    s = Settings()
    assert (s.weight, s.local) == (30, 1)


def test_label_prefix(podinfo: KubeletWriter) -> None:
    _write_pod(
        podinfo,
        labels={"app.example.com/tier": "web", "tier": "unprefixed", "role": "canary", "zone": "a"},
    )

    class WithoutPrefix(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=podinfo.path)
        tier: str = "none"  # plain fields are not looked up as labels
        zone: str = label("zone", default="none")

    class WithPrefix(CanarySettings):
        model_config = CanaryConfigDict(
            downward_api_dir=podinfo.path, label_prefix="app.example.com/"
        )
        tier: str = "none"
        role: str = label("role", default="none")  # prefixed too: there is no such label
        absolute: str = label("role/x", default="none")
        zone: str = label("app.example.com/zone", default="none")

    assert (WithoutPrefix().tier, WithoutPrefix().zone) == ("none", "a")
    s = WithPrefix()
    assert (s.tier, s.role, s.absolute, s.zone) == ("web", "none", "none", "none")


class Limits(BaseModel):
    rps: int
    burst: int = 0


def test_complex_fields_from_json_annotations(podinfo: KubeletWriter) -> None:
    _write_pod(
        podinfo,
        annotations={
            "flags": json.dumps({"new-checkout": True, "ratio": 0.25}, indent=2),
            "hosts": '["a.example.com", "b.example.com"]',
            "limits": '{"rps": 100}',
            "weights": "{}",
        },
    )

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=podinfo.path)
        flags: dict[str, Any] = annotation("flags", default_factory=dict)
        hosts: list[str] = []
        limits: Limits = Limits(rps=1)
        weights: dict[str, int] | None = None

    s = Settings()
    assert s.flags == {"new-checkout": True, "ratio": 0.25}
    assert s.hosts == ["a.example.com", "b.example.com"]
    assert s.limits == Limits(rps=100, burst=0)
    assert s.weights == {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("false", False), ("True", True), ("False", False), ("1", True)],
)
def test_booleans(podinfo: KubeletWriter, text: str, expected: bool) -> None:
    _write_pod(podinfo, annotations={"enabled": text})

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=podinfo.path)
        enabled: bool = not expected

    assert Settings().enabled is expected


@pytest.mark.parametrize(
    ("role", "canary", "stable"),
    [("canary", True, False), ("preview", True, False), ("stable", False, True),
     ("active", False, True), ("other", False, False)],
)  # fmt: skip
def test_rollout_info_from_labels(
    podinfo: KubeletWriter, role: str, canary: bool, stable: bool
) -> None:
    _write_pod(podinfo, labels={"role": role, "rollouts-pod-template-hash": "6d8f7c9b5"})

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=podinfo.path)
        rollout: RolloutInfo = RolloutInfo()

    info = Settings().rollout
    assert info == RolloutInfo(role=role, pod_template_hash="6d8f7c9b5")
    assert (info.is_canary, info.is_stable) == (canary, stable)


def test_rollout_role_label_is_configurable(podinfo: KubeletWriter) -> None:
    _write_pod(podinfo, labels={"role": "stable", "example.com/track": "canary"})

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(
            downward_api_dir=podinfo.path, role_label="example.com/track"
        )
        rollout: RolloutInfo | None = None

    info = Settings().rollout
    assert info is not None
    assert info.role == "canary"
    assert info.pod_template_hash is None
    assert info.is_canary


def test_generic_and_optional_fields_beside_rollout_info(podinfo: KubeletWriter) -> None:
    """Parametrised builtins in a union (``dict[str, int] | None``) are plain fields: on
    Python 3.10 they pass ``isinstance(..., type)`` and once made the rollout check raise
    TypeError, reported as a validator error of the whole class."""
    _write_pod(
        podinfo,
        labels={"role": "canary"},
        annotations={f"{PREFIX}limits": '{"cpu": 2}', f"{PREFIX}tags": '["a", "b"]'},
    )

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=podinfo.path, annotation_prefix=PREFIX)
        limits: dict[str, int] | None = None
        tags: list[str] | None = None
        weights: dict[str, float] = {}
        rollout: RolloutInfo | None = None

    settings = Settings()

    assert settings.limits == {"cpu": 2}
    assert settings.tags == ["a", "b"]
    assert settings.weights == {}
    assert settings.rollout is not None and settings.rollout.is_canary


def test_rollout_role_flips_with_a_new_generation(podinfo: KubeletWriter) -> None:
    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=podinfo.path)
        rollout: RolloutInfo = RolloutInfo()

    _write_pod(podinfo, labels={"role": "canary", "rollouts-pod-template-hash": "a1"})
    before = Settings().rollout
    _write_pod(podinfo, labels={"role": "stable", "rollouts-pod-template-hash": "a1"})
    after = Settings().rollout

    assert before.is_canary and not before.is_stable
    assert after.is_stable and not after.is_canary


# --------------------------------------------------------------------------------------------
# Precedence


def test_precedence_level_by_level(
    tmp_path: Path, podinfo: KubeletWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    configmaps = KubeletWriter(tmp_path / "cm")
    secrets = KubeletWriter(tmp_path / "sec")
    dotenv = tmp_path / ".env"

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(
            downward_api_dir=podinfo.path,
            label_prefix="",
            configmap_dirs=[configmaps.path],
            secrets_dirs=[secrets.path],
            env_file=dotenv,
        )
        level: str = "from-default"

    annotations = {"level": "from-annotation"}
    labels = {"level": "from-label"}
    _write_pod(podinfo, labels=labels, annotations=annotations)
    configmaps.write({"level": "from-configmap"})
    secrets.write({"level": "from-secret"})
    monkeypatch.setenv("LEVEL", "from-env")
    dotenv.write_text("LEVEL=from-dotenv\n")

    assert Settings(level="from-init").level == "from-init"
    assert Settings().level == "from-annotation"
    _write_pod(podinfo, labels=labels)
    assert Settings().level == "from-label"
    _write_pod(podinfo)
    assert Settings().level == "from-configmap"
    configmaps.write({"other": "x"})
    assert Settings().level == "from-secret"
    secrets.write({"other": "x"})
    assert Settings().level == "from-env"
    monkeypatch.delenv("LEVEL")
    assert Settings().level == "from-dotenv"
    dotenv.unlink()
    assert Settings().level == "from-default"


def test_origins_name_the_winning_source(
    tmp_path: Path, podinfo: KubeletWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_pod(podinfo, annotations={"a": "1"})
    monkeypatch.setenv("A", "2")
    monkeypatch.setenv("B", "3")

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=podinfo.path)
        a: int = 0
        b: int = 0
        c: int = 0

    s = Settings()
    assert s.origins["a"].source == str(podinfo.path / "annotations")
    assert s.origins["b"].source == "environment"
    assert "c" not in s.origins
    assert Settings(a=5).origins["a"].source == "init"


# --------------------------------------------------------------------------------------------
# ConfigMaps and Secrets


def test_key_per_file_first_directory_wins(tmp_path: Path) -> None:
    KubeletWriter(tmp_path / "cm1").write({"log-level": "debug"})
    KubeletWriter(tmp_path / "cm2").write({"log-level": "error", "workers": "8"})

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(
            downward_api_dir=None, configmap_dirs=[tmp_path / "cm1", str(tmp_path / "cm2")]
        )
        log_level: str = "info"
        workers: int = 1

    s = Settings()
    assert (s.log_level, s.workers) == ("debug", 8)
    assert s.origins["workers"].source == str(tmp_path / "cm2" / "workers")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("value", "value"),
        ("value\n", "value"),
        ("value\r\n", "value"),
        ("value\n\n", "value\n"),
        ("two\nlines\n", "two\nlines"),
        ("value\r", "value\r"),
        ("", ""),
    ],
)
def test_one_trailing_newline_is_dropped(tmp_path: Path, content: str, expected: str) -> None:
    KubeletWriter(tmp_path / "cm").write({"motd": content})

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=None, configmap_dirs=[tmp_path / "cm"])
        motd: str = "default"

    assert Settings().motd == expected


def test_configmap_by_field_name_and_dashed_name(tmp_path: Path) -> None:
    KubeletWriter(tmp_path / "cm").write({"db_host": "db", "db-port": "5432"})

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=None, configmap_dirs=[tmp_path / "cm"])
        db_host: str = ""
        db_port: int = 0

    assert (Settings().db_host, Settings().db_port) == ("db", 5432)


def test_non_utf8_configmap_file_is_a_named_problem(tmp_path: Path) -> None:
    KubeletWriter(tmp_path / "cm").write({"motd": b"\xff\xfe"})

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=None, configmap_dirs=[tmp_path / "cm"])
        motd: str = "default"

    with pytest.raises(SettingsValidationError) as info:
        Settings()
    assert str(tmp_path / "cm" / "motd") in str(info.value)


TOKEN = "tok-3b9e5c41-never-shown"


def test_secrets_are_read_and_hidden(tmp_path: Path) -> None:
    KubeletWriter(tmp_path / "sec").write(
        {"db-password": f"{TOKEN}-1\n", "api_token": f"{TOKEN}-2", "plain": f"{TOKEN}-3"}
    )
    KubeletWriter(tmp_path / "cm").write({"log-level": "debug"})

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(
            downward_api_dir=None,
            configmap_dirs=[tmp_path / "cm"],
            secrets_dirs=[tmp_path / "sec"],
        )
        db_password: SecretStr = secret("db-password")
        api_token: SecretStr | None = None
        plain: str = ""  # typed str, but it came from a Secret volume
        log_level: str = "info"

    s = Settings()

    assert s.db_password.get_secret_value() == f"{TOKEN}-1"
    assert s.api_token is not None
    assert s.api_token.get_secret_value() == f"{TOKEN}-2"
    assert s.plain == f"{TOKEN}-3"
    assert secret_fields(s) == {"db_password", "api_token", "plain"}
    assert secret_fields(Settings) == {"db_password", "api_token"}
    dumped = redacted_dump(s)
    assert dumped["log_level"] == "debug"
    assert dumped["db_password"] == dumped["plain"] == "**********"
    for text in (repr(s), str(s), json.dumps(dumped), repr(s.origins)):
        assert TOKEN not in text
    assert "debug" in repr(s)


def test_secret_with_an_alias_is_hidden(tmp_path: Path) -> None:
    KubeletWriter(tmp_path / "sec").write({"db-password": TOKEN})

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=None, secrets_dirs=[tmp_path / "sec"])
        db_password: str = Field("", alias="db-password")

    s = Settings()
    assert s.db_password == TOKEN
    assert "db_password" in secret_fields(s)
    assert s.origins["db_password"].secret
    for text in (repr(s), str(s), json.dumps(redacted_dump(s))):
        assert TOKEN not in text


# --------------------------------------------------------------------------------------------
# Errors


def test_validation_error_names_field_file_line_and_key(podinfo: KubeletWriter) -> None:
    _write_pod(
        podinfo,
        annotations={f"{PREFIX}a-first": "1", f"{PREFIX}max-connections": TOKEN, f"{PREFIX}z": "2"},
    )

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=podinfo.path, annotation_prefix=PREFIX)
        max_connections: int = 10

    with pytest.raises(SettingsValidationError) as info:
        Settings()

    error = info.value
    path = podinfo.path / "annotations"
    key = f"{PREFIX}max-connections"
    line = _line_of(path, key)
    assert isinstance(error, ValueError)
    assert isinstance(error, canaryconf.CanaryConfError)
    message = str(error)
    assert "max_connections" in message
    assert str(path) in message
    assert f"line {line}" in message
    assert repr(key) in message
    [problem] = error.problems
    assert (problem.field, problem.source, problem.key, problem.line) == (
        "max_connections",
        str(path),
        key,
        line,
    )
    assert TOKEN not in _exception_texts(error)


def test_line_of_the_first_key_after_a_byte_order_mark(podinfo: KubeletWriter) -> None:
    podinfo.write({"annotations": f'\ufeffport="{TOKEN}"\nz="1"'})

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=podinfo.path)
        port: int = 0

    with pytest.raises(SettingsValidationError) as info:
        Settings()
    [problem] = info.value.problems
    assert (problem.key, problem.line) == ("port", 1)


def test_custom_validator_message_of_a_secret_is_withheld(tmp_path: Path) -> None:
    KubeletWriter(tmp_path / "sec").write({"api-key": TOKEN, "other-key": TOKEN})

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=None, secrets_dirs=[tmp_path / "sec"])
        api_key: SecretStr = secret("api-key")
        other_key: SecretStr = secret("other-key")

        @field_validator("api_key")
        @classmethod
        def _short(cls, value: SecretStr) -> SecretStr:
            raise ValueError(f"{value.get_secret_value()} is not a valid key")

        @field_validator("other_key")
        @classmethod
        def _custom(cls, value: SecretStr) -> SecretStr:
            raise PydanticCustomError("bad_key", "bad key {v}", {"v": value.get_secret_value()})

    with pytest.raises(SettingsValidationError) as info:
        Settings()

    assert {p.field for p in info.value.problems} == {"api_key", "other_key"}
    assert str(tmp_path / "sec" / "api-key") in str(info.value)
    assert TOKEN not in _exception_texts(info.value)


def test_model_validator_message_is_withheld_when_secrets_exist(tmp_path: Path) -> None:
    KubeletWriter(tmp_path / "sec").write({"password": TOKEN})

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=None, secrets_dirs=[tmp_path / "sec"])
        password: SecretStr = SecretStr("")
        user: str = "app"

        @model_validator(mode="after")
        def _not_the_user(self) -> Settings:
            raise ValueError(f"{self.user} may not use {self.password.get_secret_value()}")

    class NoSecrets(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=None)
        user: str = "app"

        @model_validator(mode="after")
        def _check(self) -> NoSecrets:
            raise ValueError(f"user {self.user} is not allowed")

    with pytest.raises(SettingsValidationError) as info:
        Settings()
    assert TOKEN not in _exception_texts(info.value)
    assert "message withheld" in str(info.value)
    with pytest.raises(SettingsValidationError, match="user app is not allowed"):
        NoSecrets()


def test_invalid_json_names_file_line_and_key(podinfo: KubeletWriter) -> None:
    _write_pod(podinfo, annotations={"a": "1", "flags": '{"ratio": ' + TOKEN + "}"})

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=podinfo.path)
        flags: dict[str, float] = annotation("flags", default_factory=dict)

    with pytest.raises(SettingsValidationError) as info:
        Settings()

    path = podinfo.path / "annotations"
    [problem] = info.value.problems
    assert problem.field == "flags"
    assert problem.source == str(path)
    assert problem.key == "flags"
    assert problem.line == _line_of(path, "flags")
    assert "JSON" in problem.reason
    assert TOKEN not in _exception_texts(info.value)


def test_invalid_json_of_a_required_field_is_reported_once(podinfo: KubeletWriter) -> None:
    _write_pod(podinfo, annotations={"flags": "{not json"})

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=podinfo.path)
        flags: dict[str, float] = annotation("flags")

    with pytest.raises(SettingsValidationError) as info:
        Settings()
    [problem] = info.value.problems
    assert "JSON" in problem.reason


def test_every_failing_field_is_listed(tmp_path: Path, podinfo: KubeletWriter) -> None:
    _write_pod(
        podinfo,
        labels={"replicas": "many"},
        annotations={"ratio": TOKEN, "flags": "[", "ok": "1"},
    )
    KubeletWriter(tmp_path / "cm").write({"port": TOKEN})

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(
            downward_api_dir=podinfo.path, configmap_dirs=[tmp_path / "cm"]
        )
        ratio: float = 0.0
        flags: dict[str, int] = {}
        replicas: int = label("replicas", default=1)
        port: int = 80
        ok: int = 0
        required: str

    with pytest.raises(SettingsValidationError) as info:
        Settings()

    problems = {p.field: p for p in info.value.problems}
    assert set(problems) == {"ratio", "flags", "replicas", "port", "required"}
    assert problems["replicas"].source == str(podinfo.path / "labels")
    assert problems["port"].source == str(tmp_path / "cm" / "port")
    assert problems["port"].line is None
    assert problems["required"].source is None
    assert str(info.value).startswith("5 validation errors for Settings")
    assert TOKEN not in _exception_texts(info.value)


def test_malformed_annotations_file(podinfo: KubeletWriter) -> None:
    podinfo.write({"annotations": f'a="1"\nb="2"\nc={TOKEN}\n'})

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=podinfo.path)
        a: int = 0

    with pytest.raises(DownwardAPIFormatError) as info:
        Settings()
    assert info.value.source == str(podinfo.path / "annotations")
    assert info.value.line == 3
    assert str(podinfo.path / "annotations") in str(info.value)
    assert "line 3" in str(info.value)
    assert TOKEN not in _exception_texts(info.value)


@pytest.mark.parametrize("extra", ["ignore", "forbid", "allow"])
def test_kubelet_and_unrelated_annotations_never_fail(podinfo: KubeletWriter, extra: str) -> None:
    _write_pod(
        podinfo,
        labels={"app": "shop", "role": "canary"},
        annotations={
            "rollout.argoproj.io/revision": "3",
            "kubectl.kubernetes.io/last-applied-configuration": '{"kind": "Pod"}',
            "unrelated": "\x00\n\t",
        },
    )

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(
            downward_api_dir=podinfo.path,
            label_prefix="",
            extra=extra,  # type: ignore[typeddict-item]
        )
        db_url: str = "postgres://stable-db/app"
        rollout: RolloutInfo = RolloutInfo()

    s = Settings()
    assert s.db_url == "postgres://stable-db/app"
    assert s.rollout.is_canary


def test_snapshot_is_frozen(podinfo: KubeletWriter) -> None:
    _write_pod(podinfo, annotations={"db-url": "postgres://canary-db/app"})

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=podinfo.path)
        db_url: str = ""

    s = Settings()
    with pytest.raises(pydantic.ValidationError):
        s.db_url = "postgres://other/app"  # type: ignore[misc]
    assert s.db_url == "postgres://canary-db/app"
    assert hash(s) == hash(Settings())


def test_missing_volume_gives_defaults_unless_required(tmp_path: Path) -> None:
    missing = tmp_path / "podinfo"

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=missing, configmap_dirs=[tmp_path / "cm"])
        db_url: str = "postgres://stable-db/app"
        rollout: RolloutInfo = RolloutInfo()

    class Strict(Settings):
        model_config = CanaryConfigDict(require_volumes=True)

    assert Settings().db_url == "postgres://stable-db/app"
    assert Settings().rollout == RolloutInfo()
    with pytest.raises(VolumeNotFoundError) as info:
        Strict()
    assert str(missing) in str(info.value)


def test_downward_dir_none_reads_nothing(tmp_path: Path) -> None:
    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=None, require_volumes=True)
        role: str = label("role", default="stable")

    assert Settings().role == "stable"
    assert Settings.volume_dirs() == []


def test_volume_dirs_in_precedence_order(tmp_path: Path) -> None:
    class Settings(CanarySettings):
        model_config = CanaryConfigDict(
            downward_api_dir=tmp_path / "p",
            configmap_dirs=[tmp_path / "c1", tmp_path / "c2"],
            secrets_dirs=str(tmp_path / "s"),  # type: ignore[typeddict-item]
        )

    assert Settings.volume_dirs() == [str(tmp_path / n) for n in ("p", "c1", "c2", "s")]


def test_restart_fields() -> None:
    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=None)
        workers: int = restart_required(4)
        pool: int = annotation("pool", default=1, restart_required=True)
        live: int = 0

    assert restart_fields(Settings) == {"workers", "pool"}
    assert Settings().workers == 4


# --------------------------------------------------------------------------------------------
# build_settings


def test_build_settings_uses_the_snapshots_given(tmp_path: Path, podinfo: KubeletWriter) -> None:
    configmaps = KubeletWriter(tmp_path / "cm")
    _write_pod(podinfo, labels={"role": "canary"}, annotations={"db-url": "postgres://canary"})
    configmaps.write({"workers": "2"})

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(
            downward_api_dir=podinfo.path, configmap_dirs=[configmaps.path]
        )
        db_url: str = ""
        role: str = label("role", default="")
        workers: int = 1

    volumes = {str(podinfo.path): read_volume(podinfo.path), str(configmaps.path): None}
    _write_pod(podinfo, labels={"role": "stable"}, annotations={"db-url": "postgres://stable"})

    built = build_settings(Settings, volumes)

    assert isinstance(built, Settings)
    assert (built.db_url, built.role) == ("postgres://canary", "canary")
    assert built.workers == 1  # the snapshot said: no such volume
    fresh = Settings()
    assert (fresh.db_url, fresh.role, fresh.workers) == ("postgres://stable", "stable", 2)
    assert build_settings(Settings, volumes, workers=7).workers == 7


def test_build_settings_reads_volumes_it_was_not_given(
    tmp_path: Path, podinfo: KubeletWriter
) -> None:
    _write_pod(podinfo, annotations={"db-url": "postgres://canary"})
    KubeletWriter(tmp_path / "cm").write({"workers": "3"})

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(
            downward_api_dir=podinfo.path, configmap_dirs=[tmp_path / "cm"]
        )
        db_url: str = ""
        workers: int = 1

    built = build_settings(Settings, {str(podinfo.path): read_volume(podinfo.path)})
    assert (built.db_url, built.workers) == ("postgres://canary", 3)


@pytest.mark.parametrize("kind", ["alias", "validation_alias", "alias_choices"])
def test_aliased_fields_take_volume_values(podinfo: KubeletWriter, kind: str) -> None:
    def aliased(name: str) -> dict[str, Any]:
        if kind == "alias_choices":
            return {"validation_alias": AliasChoices(name.upper(), name)}
        return {kind: name.upper()}

    _write_pod(podinfo, annotations={"db-url": "postgres://canary", "port": TOKEN})

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=podinfo.path)
        db_url: str = Field("", **aliased("database_url"))

    class Failing(Settings):
        port: int = Field(0, **aliased("listen_port"))

    s = Settings()
    assert s.db_url == "postgres://canary"
    assert s.origins["db_url"].key == "db-url"
    with pytest.raises(SettingsValidationError) as info:
        Failing()
    [problem] = info.value.problems
    assert (problem.field, problem.key) == ("port", "port")
    assert problem.source == str(podinfo.path / "annotations")
    assert TOKEN not in _exception_texts(info.value)


def test_optional_complex_field_takes_json(podinfo: KubeletWriter) -> None:
    _write_pod(podinfo, annotations={"weights": '{"a": 1}', "bad": '{"a": ', "hosts": "solo"})

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=podinfo.path)
        weights: dict[str, int] | None = None
        hosts: list[str] | str = []

    class Failing(Settings):
        bad: dict[str, int] | None = None

    s = Settings()
    assert s.weights == {"a": 1}
    assert s.hosts == "solo"  # not JSON, and a str is allowed
    with pytest.raises(SettingsValidationError) as info:
        Failing()
    [problem] = info.value.problems
    assert (problem.field, problem.key) == ("bad", "bad")
    assert "JSON" in problem.reason


# --------------------------------------------------------------------------------------------
# Doctests


@pytest.mark.parametrize(
    "module",
    [
        canaryconf.volume,
        canaryconf.testing,
        canaryconf.settings,
        # What canaryconf re-exports from its private modules (_fields, _live, _errors)
        # carries the package as its module, so its examples are the package's.
        canaryconf,
        canaryconf.rollout,
        canaryconf._errors,
        canaryconf.change,
    ],
    ids=lambda m: m.__name__,
)
def test_doctests(module: ModuleType) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


def test_plain_secret_fields_never_come_from_annotations_or_labels(tmp_path: Path) -> None:
    podinfo = KubeletWriter(tmp_path / "podinfo")
    secrets = KubeletWriter(tmp_path / "secrets")
    podinfo.write(
        pod_files(
            labels={"ex-db-password": "from-label"},
            annotations={"ex/db-password": "from-annotation", "ex/api-token": "explicit"},
        )
    )
    secrets.write({"db-password": "from-secret"})

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(
            downward_api_dir=str(podinfo.path),
            secrets_dirs=[str(secrets.path)],
            annotation_prefix="ex/",
            label_prefix="ex-",
        )

        db_password: SecretStr = SecretStr("")
        api_token: SecretStr = annotation("api-token", default=SecretStr(""), secret=True)

    settings = Settings()
    # Anyone who can read the pod can read its annotations: a plain secret field only
    # takes values from Secret volumes (and the environment), never from pod metadata...
    assert settings.db_password.get_secret_value() == "from-secret"
    # ...unless the field says so explicitly.
    assert settings.api_token.get_secret_value() == "explicit"


# --------------------------------------------------------------------------------------------
# Reloads read only the volume sources (the static ones were read once)


class _Nested(BaseModel):
    host: str = "localhost"
    port: int = 0


def _parity_class(tmp_path: Path) -> type[CanarySettings]:
    (tmp_path / "secrets_dir").mkdir(exist_ok=True)

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(
            downward_api_dir=tmp_path / "pod",
            annotation_prefix=PREFIX,
            configmap_dirs=[tmp_path / "cm"],
            env_prefix="APP_",
            env_nested_delimiter="__",
            env_file=tmp_path / ".env",
            secrets_dir=tmp_path / "secrets_dir",
            populate_by_name=True,
        )
        level: str = "from-default"
        flags: dict[str, Any] = {}
        db: _Nested = _Nested()
        aliased: str = Field("default", alias="other-name")
        chosen: int = Field(0, validation_alias=AliasChoices("chosen", "picked"))
        workers: int = configmap("workers", default=1)
        token: SecretStr = SecretStr("")

    return Settings


@pytest.mark.parametrize(
    "case",
    [
        "volumes-over-env",
        "env-over-volumes-missing",
        "dicts-merge-across-sources",
        "init-by-alias",
        "init-by-name",
        "dotenv-and-secrets-dir",
    ],
)
def test_a_build_with_static_values_equals_a_full_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    """What a reload validates (volume sources merged with the static values read once)
    is what pydantic-settings' whole pipeline gives for the same files and environment:
    the same values and the same origins."""
    from canaryconf.settings import build_snapshot

    settings_cls = _parity_class(tmp_path)
    pod = KubeletWriter(tmp_path / "pod")
    cm = KubeletWriter(tmp_path / "cm")
    annotations: dict[str, str] = {}
    init: dict[str, Any] = {}
    if case == "volumes-over-env":
        monkeypatch.setenv("APP_LEVEL", "from-env")
        annotations = {PREFIX + "level": "from-annotation"}
        cm.write({"workers": "4"})
    elif case == "env-over-volumes-missing":
        monkeypatch.setenv("APP_LEVEL", "from-env")
        monkeypatch.setenv("APP_WORKERS", "9")
    elif case == "dicts-merge-across-sources":
        monkeypatch.setenv("APP_FLAGS", json.dumps({"a": 1, "b": 1}))
        monkeypatch.setenv("APP_DB__PORT", "5432")
        annotations = {PREFIX + "flags": json.dumps({"b": 2, "c": 2})}
        annotations[PREFIX + "db"] = json.dumps({"host": "canary-db"})
        init = {"flags": {"c": 3, "d": 3}}
    elif case == "init-by-alias":
        monkeypatch.setenv("APP_OTHER-NAME", "from-env")
        annotations = {PREFIX + "other-name": "from-annotation"}
        init = {"other-name": "from-init", "picked": 7}
    elif case == "init-by-name":
        annotations = {PREFIX + "aliased": "from-annotation", PREFIX + "chosen": "3"}
        init = {"aliased": "from-init", "chosen": 8}
    else:
        (tmp_path / ".env").write_text("APP_LEVEL=from-dotenv\nAPP_WORKERS=6\n")
        (tmp_path / "secrets_dir" / "APP_token").write_text("s3cret")
    pod.write(pod_files(annotations=annotations))
    volumes = {d: read_volume(d) for d in settings_cls.volume_dirs() if Path(d).exists()}

    full, static = build_snapshot(settings_cls, volumes, init)
    assert static is not None
    reloaded, kept = build_snapshot(settings_cls, volumes, init, static)
    assert kept is static
    assert reloaded.model_dump() == full.model_dump()
    assert reloaded.origins == full.origins
    if case == "dicts-merge-across-sources":
        assert full.flags == {"a": 1, "b": 2, "c": 3, "d": 3}
        assert full.db == _Nested(host="canary-db", port=5432)
    if case == "init-by-alias":
        assert (full.aliased, full.chosen) == ("from-init", 7)


def test_a_reload_takes_the_environment_read_at_start_until_asked_to_read_it_again(
    tmp_path: Path, podinfo: KubeletWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_pod(podinfo, annotations={"level": "one"})
    monkeypatch.setenv("WORKERS", "2")
    (tmp_path / ".env").write_text("REGION=eu\n")

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=podinfo.path, env_file=tmp_path / ".env")
        level: str = ""
        workers: int = 1
        region: str = ""

    settings = canaryconf.live(Settings)
    monkeypatch.setenv("WORKERS", "3")
    (tmp_path / ".env").write_text("REGION=us\n")
    _write_pod(podinfo, annotations={"level": "two"})
    assert settings.reload().status == "applied"
    assert (settings.level, settings.workers, settings.region) == ("two", 2, "eu")

    result = settings.reload(everything=True)
    assert result.status == "applied"
    assert result.change is not None and result.change.fields == {"workers", "region"}
    assert (settings.level, settings.workers, settings.region) == ("two", 3, "us")
    # What was read again is what reloads use from now on.
    _write_pod(podinfo, annotations={"level": "three"})
    assert settings.reload().status == "applied"
    assert (settings.level, settings.workers, settings.region) == ("three", 3, "us")


def test_reading_everything_again_with_an_invalid_environment_keeps_the_old_values(
    podinfo: KubeletWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_pod(podinfo)
    monkeypatch.setenv("WORKERS", "2")

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=podinfo.path)
        workers: int = 1

    settings = canaryconf.live(Settings)
    monkeypatch.setenv("WORKERS", "many")
    result = settings.reload(everything=True)
    assert result.status == "failed"
    assert isinstance(result.error, SettingsValidationError)
    assert "WORKERS" in str(result.error) or "workers" in str(result.error)
    monkeypatch.setenv("WORKERS", "5")
    _write_pod(podinfo, annotations={"x": "1"})
    # The environment that failed was never adopted: a reload still validates with 2.
    assert settings.reload().status in ("unchanged", "applied")
    assert settings.workers == 2
    assert settings.reload(everything=True).status == "applied"
    assert settings.workers == 5


def test_a_class_that_arranges_its_sources_reads_them_all_at_every_reload(
    podinfo: KubeletWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

    from canaryconf.settings import reuses_static_values

    _write_pod(podinfo)
    monkeypatch.setenv("WORKERS", "2")

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=podinfo.path)
        workers: int = 1

        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (env_settings, *cls.volume_sources(settings_cls))

    assert not reuses_static_values(Settings)
    settings = canaryconf.live(Settings)
    monkeypatch.setenv("WORKERS", "3")
    _write_pod(podinfo, annotations={"x": "1"})
    assert settings.reload().status == "applied"
    assert settings.workers == 3


def test_a_validator_that_changes_its_input_does_not_change_what_the_next_reload_sees(
    podinfo: KubeletWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_pod(podinfo, annotations={"marker": "1"})
    monkeypatch.setenv("LIMITS", json.dumps({"cpu": 1}))

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=podinfo.path)
        marker: int = 0
        limits: dict[str, int] = {}

        @model_validator(mode="before")
        @classmethod
        def double(cls, data: Any) -> Any:
            data["limits"]["cpu"] *= 2  # in place, in the input pydantic was given
            return data

    settings = canaryconf.live(Settings)
    assert settings.limits == {"cpu": 2}
    for marker in (2, 3):
        _write_pod(podinfo, annotations={"marker": str(marker)})
        assert settings.reload().status == "applied"
        assert (settings.marker, settings.limits) == (marker, {"cpu": 2})
