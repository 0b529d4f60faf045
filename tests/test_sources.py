"""The source registry: each source kind declares itself once, and volume_dirs(), the
settings' sources, the CLI's options and redaction all follow from that declaration."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import SecretStr

from canaryconf import CanaryConfigDict, CanarySettings, live, redacted_dump
from canaryconf._cli.common import Redaction, explicit_dirs, retarget
from canaryconf.cli import build_parser
from canaryconf.settings import secret_fields
from canaryconf.sources.base import (
    Origin,
    VolumeSource,
    as_dirs,
    files_needed,
    register_source,
    registered_sources,
    unregister_source,
    volume_dirs,
)
from canaryconf.sources.providers import ConfigMapSource, ProjectedSource
from canaryconf.sources.providers._key_per_file import KeyPerFileSource
from canaryconf.testing import KubeletWriter


class VaultAgentSource(KeyPerFileSource):
    """A kind no one shipped: files a Vault agent sidecar renders, one per key, secret."""

    kind = "vault"
    accepts = ("vault",)
    config_key = "vault_dirs"
    default_dirs: ClassVar[Any] = ()
    secret = True
    cli_flag = "--vault-dir"
    cli_help = "a directory a Vault agent renders secrets into"


@pytest.fixture
def vault_kind() -> Iterator[None]:
    register_source(VaultAgentSource, before="secret")
    try:
        yield
    finally:
        unregister_source("vault")


def test_registry_order_is_the_documented_precedence() -> None:
    kinds = [source.kind for source in registered_sources()]
    assert kinds == ["annotation", "label", "pod_field", "projected", "configmap", "secret"]


def test_one_directory_or_a_list() -> None:
    assert as_dirs("/a") == ["/a"]
    assert as_dirs(Path("/a")) == ["/a"]
    assert as_dirs(["/a", Path("/b")]) == ["/a", "/b"]
    assert as_dirs(None) == as_dirs(()) == []


def test_a_kind_defined_outside_canaryconf_is_read_watched_and_redacted(
    tmp_path: Path, vault_kind: None
) -> None:
    KubeletWriter(tmp_path / "cm").write({"db-user": "app", "db-password": "from-configmap"})
    KubeletWriter(tmp_path / "vault").write({"db-password": "hunter2", "api-key": "k-1"})
    KubeletWriter(tmp_path / "sec").write({"api-key": "from-secret"})

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(
            downward_api_dir=None,
            configmap_dirs=[tmp_path / "cm"],
            secrets_dirs=str(tmp_path / "sec"),
            vault_dirs=str(tmp_path / "vault"),  # type: ignore[typeddict-unknown-key]
        )
        db_user: str = ""
        db_password: str = ""
        api_key: str = ""

    assert [s.kind for s in registered_sources()][-2:] == ["vault", "secret"]
    assert volume_dirs(Settings) == [str(tmp_path / n) for n in ("cm", "vault", "sec")]
    assert any(isinstance(s, VaultAgentSource) for s in Settings.volume_sources(Settings))

    s = Settings()
    # Precedence follows the registry: configmap > vault > secret.
    assert (s.db_user, s.db_password, s.api_key) == ("app", "from-configmap", "k-1")
    assert secret_fields(s) == {"api_key"}  # it came from a secret kind
    assert "k-1" not in repr(s)
    assert redacted_dump(s)["api_key"] == "**********"

    # The CLI offers the kind's option, and hides its whole directory.
    args = build_parser().parse_args(["show", "--vault-dir", str(tmp_path / "v2")])
    assert explicit_dirs(args) == {"vault_dirs": [str(tmp_path / "v2")]}
    moved = retarget(Settings, dirs=explicit_dirs(args))
    assert volume_dirs(moved)[1] == str(tmp_path / "v2")
    assert Redaction(Settings).file(str(tmp_path / "vault"), "api-key", "k-1") == "**********"

    # A live instance watches it and reloads from it.
    settings = live(Settings)
    assert str(tmp_path / "vault") in settings.volume_dirs
    KubeletWriter(tmp_path / "vault").write({"db-password": "hunter2", "api-key": "k-2"})
    assert settings.reload().status == "applied"
    assert settings.api_key == "k-2"


class LookupOnly(VolumeSource):
    """A kind written the way the first release asked: ``lookup`` only."""

    kind = "env_dir"
    config_key = "env_dirs"

    def lookup(self, field_name: str, field: Any, mapping: Any) -> Any:
        for directory in self.dirs(self.settings_cls):
            snapshot = self.context.volume(directory)
            if snapshot is not None and field_name in snapshot.files:
                return snapshot.text(field_name), Origin(snapshot.file_path(field_name))
        return None


class UpperConfigMaps(ConfigMapSource):
    """A built-in kind with a lookup of its own: that lookup is asked, not the fetcher it
    inherits."""

    kind = "upper"
    config_key = "upper_dirs"

    def lookup(self, field_name: str, field: Any, mapping: Any) -> Any:
        found = super().lookup(field_name, field, mapping)
        return None if found is None else (found[0].upper(), found[1])


def test_a_kind_may_define_lookup_or_fetcher(tmp_path: Path) -> None:
    KubeletWriter(tmp_path / "env").write({"region": "eu-west-1"})
    KubeletWriter(tmp_path / "upper").write({"zone": "b"})
    register_source(LookupOnly)
    register_source(UpperConfigMaps)
    try:

        class Settings(CanarySettings):
            model_config = CanaryConfigDict(
                downward_api_dir=None,
                env_dirs=str(tmp_path / "env"),  # type: ignore[typeddict-unknown-key]
                upper_dirs=str(tmp_path / "upper"),  # type: ignore[typeddict-unknown-key]
            )
            region: str = ""
            zone: str = ""

        settings = live(Settings)
        assert (settings.region, settings.zone) == ("eu-west-1", "B")
        KubeletWriter(tmp_path / "env").write({"region": "us-east-2"})
        assert settings.reload().status == "applied"
        assert settings.region == "us-east-2"
        assert settings.current.origins["zone"].source == str(tmp_path / "upper" / "zone")
    finally:
        unregister_source("upper")
        unregister_source("env_dir")


def test_unregistered_kind_leaves_no_trace(tmp_path: Path) -> None:
    register_source(VaultAgentSource)
    unregister_source("vault")

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(
            downward_api_dir=None,
            vault_dirs=str(tmp_path),  # type: ignore[typeddict-unknown-key]
        )

    assert volume_dirs(Settings) == []
    with pytest.raises(SystemExit):
        build_parser().parse_args(["show", "--vault-dir", "x"])


def test_a_kind_is_registered_once() -> None:
    with pytest.raises(ValueError, match="'secret' is already registered"):
        register_source(registered_sources()[-1])


def test_each_kind_declares_which_of_its_files_are_secret(tmp_path: Path) -> None:
    class Settings(CanarySettings):
        model_config = CanaryConfigDict(
            downward_api_dir=None,
            projected_dirs=[str(tmp_path / "app")],
            projected_secret_keys=["db-password"],
        )

    files = {source.kind: source.secret_files(Settings) for source in registered_sources()}
    assert files["configmap"] == frozenset()
    assert files["secret"] is None  # every file
    assert files["projected"] == {"db-password"}
    # Without a class nothing lists a projected volume's Secret items: all are secret.
    assert ProjectedSource.secret_files(None) is None
    assert ProjectedSource.secret_files(CanarySettings) == frozenset()  # the default
    redaction = Redaction(Settings)
    assert redaction.file(str(tmp_path / "app"), "db-password", "x") == "**********"
    assert redaction.file(str(tmp_path / "app"), "log-level", "debug") == "debug"


def test_selective_kinds_restrict_reads(tmp_path: Path) -> None:
    class Settings(CanarySettings):
        model_config = CanaryConfigDict(
            downward_api_dir=str(tmp_path / "podinfo"),
            configmap_dirs=[str(tmp_path / "cm")],
            projected_dirs=[str(tmp_path / "app")],
        )
        db_url: str = ""
        token: SecretStr = SecretStr("")

    needed = files_needed(Settings)
    # A downwardAPI volume: its label and annotation files (no other item).
    assert needed[str(tmp_path / "podinfo")] == {"labels", "annotations"}
    assert needed[str(tmp_path / "cm")] is None  # a ConfigMap volume is read whole
    # Plain fields may come from annotations and from files named like them.
    assert needed[str(tmp_path / "app")] == {"annotations", "db_url", "db-url", "token"}


def test_an_origin_is_an_immutable_value() -> None:
    import dataclasses

    origin = Origin("/etc/podinfo/annotations", "a/b", secret=True, map_text=b'a/b="1"')
    same = Origin("/etc/podinfo/annotations", "a/b", True)
    assert origin == same and hash(origin) == hash(same)  # the file's text is not compared
    assert origin != Origin("/etc/podinfo/annotations", "a/c", True)
    assert "map_text" not in repr(origin)
    assert origin.line == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        origin.key = "x"  # type: ignore[misc]
    moved = dataclasses.replace(origin, key="a/c")
    assert (moved.source, moved.key, moved.secret, moved.map_text) == (
        "/etc/podinfo/annotations",
        "a/c",
        True,
        b'a/b="1"',
    )


def test_a_subclass_reads_by_its_own_declaration_after_its_parent_was_used(
    tmp_path: Path,
) -> None:
    from canaryconf import annotation
    from canaryconf.testing import pod_files

    writer = KubeletWriter(tmp_path / "podinfo")
    writer.write(pod_files(annotations={"shop/color": "blue", "shop/size": "7"}))

    class Parent(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=str(tmp_path / "podinfo"))
        color: str = annotation("shop/color", default="none")

    parent = live(Parent)
    writer.write(pod_files(annotations={"shop/color": "green", "shop/size": "8"}))
    assert parent.reload().applied and parent.color == "green"

    class Child(Parent):
        size: int = annotation("shop/size", default=0)

    child = live(Child)
    assert (child.color, child.size) == ("green", 8)
    writer.write(pod_files(annotations={"shop/color": "red", "shop/size": "9"}))
    assert child.reload().applied and (child.color, child.size) == ("red", 9)
    assert parent.reload().applied and parent.color == "red"
    assert not hasattr(parent.current, "size")


def test_a_class_that_overrides_volume_sources_is_read_by_them_on_every_reload(
    tmp_path: Path,
) -> None:
    from canaryconf import annotation, label
    from canaryconf.sources.providers import LabelsSource
    from canaryconf.testing import pod_files

    writer = KubeletWriter(tmp_path / "podinfo")
    writer.write(pod_files(labels={"color": "blue"}, annotations={"size": "7"}))

    class LabelsOnly(CanarySettings):
        model_config = CanaryConfigDict(downward_api_dir=str(tmp_path / "podinfo"))
        color: str = label("color", default="none")
        size: int = annotation("size", default=0)

        @classmethod
        def volume_sources(cls, settings_cls: type[Any]) -> tuple[Any, ...]:
            return (LabelsSource(settings_cls),)  # annotations are not read here

    settings = live(LabelsOnly)
    assert (settings.color, settings.size) == ("blue", 0)
    writer.write(pod_files(labels={"color": "green"}, annotations={"size": "8"}))
    assert settings.reload().applied
    assert (settings.color, settings.size) == ("green", 0)
