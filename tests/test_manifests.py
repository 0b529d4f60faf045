"""The Kubernetes and Argo Rollouts examples are valid, and agree with each other and with
canaryconf: core kinds against the Kubernetes schemas (kubernetes-validate, offline), the
Rollout and AnalysisTemplate against a subset of Argo Rollouts' CRD schemas
(tests/schemas), and the references between them by hand."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from canaryconf import CanaryConfigDict, CanarySettings, configmap, label, pod_field
from canaryconf.sources.base import read_settings_volume
from canaryconf.testing import File, KubeletWriter, format_map

yaml = pytest.importorskip("yaml")
jsonschema = pytest.importorskip("jsonschema")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "kubernetes"
SCHEMA = Path(__file__).resolve().parent / "schemas" / "argo-rollouts-v1alpha1.schema.json"
#: The Kubernetes version whose schemas the core kinds are checked against.
K8S_VERSION = "1.30.0"
ARGO_KINDS = {"Rollout", "AnalysisTemplate"}


def _documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path.name, doc))
    return docs


DOCS = _documents()


def _ids(docs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [f"{name}:{doc['kind']}/{doc['metadata']['name']}" for name, doc in docs]


def _one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for _, d in DOCS if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def test_schemas_ship_inside_kubernetes_validate() -> None:
    # Validation must work offline: the schemas are files of the installed package.
    package = Path(kubernetes_validate.__file__).parent
    assert list(package.glob(f"kubernetes-json-schema/v{K8S_VERSION}-local-strict/*.json"))


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((EXAMPLES / "kustomization.yaml").read_text())
    files = {p.name for p in EXAMPLES.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


CORE = [(n, d) for n, d in DOCS if d["kind"] not in ARGO_KINDS]


@pytest.mark.parametrize(("name", "doc"), CORE, ids=_ids(CORE))
def test_core_kinds_validate_against_the_kubernetes_schema(name: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def _argo_validator(kind: str) -> Any:
    schema = json.loads(SCHEMA.read_text())
    wrapper = {"$ref": f"#/definitions/{kind}", "definitions": schema["definitions"]}
    return jsonschema.Draft7Validator(wrapper)


ARGO = [(n, d) for n, d in DOCS if d["kind"] in ARGO_KINDS]


@pytest.mark.parametrize(("name", "doc"), ARGO, ids=_ids(ARGO))
def test_argo_kinds_validate_against_the_crd_schema(name: str, doc: dict[str, Any]) -> None:
    assert doc["apiVersion"] == "argoproj.io/v1alpha1"
    errors = sorted(_argo_validator(doc["kind"]).iter_errors(doc), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_the_argo_schema_rejects_what_argo_rejects() -> None:
    rollout = json.loads(json.dumps(_one("Rollout")))
    validator = _argo_validator("Rollout")
    rollout["spec"]["strategy"]["canary"]["canaryMetaData"] = {}  # a typo: unknown field
    assert not validator.is_valid(rollout)
    template = json.loads(json.dumps(_one("AnalysisTemplate")))
    del template["spec"]["metrics"][0]["provider"]
    assert not _argo_validator("AnalysisTemplate").is_valid(template)


def test_the_rollout_pod_template_is_a_valid_pod_template() -> None:
    rollout = _one("Rollout")
    pod_template = {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": {"name": "shop"},
        "template": rollout["spec"]["template"],
    }
    kubernetes_validate.validate(pod_template, K8S_VERSION, strict=True)


def test_rollout_selector_services_and_ephemeral_metadata() -> None:
    spec = _one("Rollout")["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    canary = spec["strategy"]["canary"]
    for service in (canary["canaryService"], canary["stableService"]):
        assert _one("Service", service)["spec"]["selector"].items() <= labels.items()
    # canaryconf's RolloutInfo reads the role from the "role" label.
    assert canary["canaryMetadata"]["labels"]["role"] == "canary"
    assert canary["stableMetadata"]["labels"]["role"] == "stable"
    weights = [s["setWeight"] for s in canary["steps"] if "setWeight" in s]
    assert weights == sorted(weights)
    assert all(0 < w < 100 for w in weights)


def test_rollout_mounts_what_the_demo_settings_read() -> None:
    from canaryconf.demo_settings import ShopSettings

    pod = _one("Rollout")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    config = ShopSettings.model_config
    assert mounts["podinfo"] == config["downward_api_dir"]
    assert [mounts["secrets"]] == list(config["secrets_dirs"])
    items = volumes["podinfo"]["downwardAPI"]["items"]
    paths = {i["path"]: i for i in items}
    assert paths["labels"]["fieldRef"]["fieldPath"] == "metadata.labels"
    assert paths["annotations"]["fieldRef"]["fieldPath"] == "metadata.annotations"
    assert paths["name"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert paths["namespace"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    cpu = paths["limits.cpu"]["resourceFieldRef"]
    assert cpu["containerName"] == container["name"]
    assert cpu["resource"] == "limits.cpu"
    assert "cpu" in container["resources"]["limits"]
    assert _one("ConfigMap", volumes["config"]["configMap"]["name"])
    assert _one("Secret", volumes["secrets"]["secret"]["secretName"])
    # The annotations the demo's settings read are the ones the Rollout sets.
    prefix = config["annotation_prefix"]
    annotations = {
        **pod.get("annotations", {}),
        **_one("Rollout")["spec"]["template"]["metadata"]["annotations"],
        **_one("Rollout")["spec"]["strategy"]["canary"]["canaryMetadata"]["annotations"],
    }
    assert {f"{prefix}flags", f"{prefix}db-url"} <= set(annotations)
    ShopSettings.model_fields["flags"].annotation.model_validate_json(  # type: ignore[union-attr]
        annotations[f"{prefix}flags"]
    )


def test_analysis_template_is_wired_to_the_rollout_and_canaryconf_metrics() -> None:
    rollout = _one("Rollout")
    analysis = rollout["spec"]["strategy"]["canary"]["analysis"]
    (ref,) = analysis["templates"]
    template = _one("AnalysisTemplate", ref["templateName"])["spec"]
    declared = {a["name"] for a in template["args"]}
    given = {a["name"] for a in analysis["args"]}
    without_default = {a["name"] for a in template["args"] if "value" not in a}
    assert without_default <= given <= declared
    queries = " ".join(m["provider"]["prometheus"]["query"] for m in template["metrics"])
    used_args = set(re.findall(r"\{\{args\.([\w-]+)\}\}", json.dumps(template["metrics"])))
    assert used_args <= declared
    # The metric names are the ones canaryconf.metrics exposes.
    assert "canaryconf_last_reload_success" in queries
    assert 'canaryconf_reloads_total{result="failed"' in queries
    for metric in template["metrics"]:
        assert metric["failureLimit"] == 0
        assert "failureCondition" in metric


def test_sidecar_deployment_commands_parse() -> None:
    from canaryconf.cli import build_parser

    pod = _one("Deployment", "edge")["spec"]["template"]["spec"]
    assert pod["shareProcessNamespace"] is True
    parser = build_parser()
    for container in [*pod["initContainers"], *pod["containers"]]:
        command = container.get("command", [])
        if command[:1] == ["canaryconf"]:
            args = parser.parse_args(command[1:])
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            for directory in [getattr(args, "dir", None), *getattr(args, "dirs", [])]:
                if directory:
                    assert directory in mounts


def test_projected_example_loads_for_a_user_who_cannot_read_its_secret_item(
    tmp_path: Path,
) -> None:
    # Write what the kubelet writes for the example's projected volume, with its modes, and
    # read it with the settings class its comment shows.
    pod = _one("Deployment", "reports")["spec"]["template"]
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "app")["projected"]
    config_data = _one("ConfigMap", "shop-config")["data"]
    secret_data = _one("Secret", "shop-db")["stringData"]
    payload: dict[str, File] = {}
    secret_paths = []
    for source in volume["sources"]:
        for item in next(iter(source.values()))["items"]:
            mode = item.get("mode", volume["defaultMode"])
            if "downwardAPI" in source:
                field = item["fieldRef"]["fieldPath"]
                data = {
                    "metadata.labels": format_map(pod["metadata"]["labels"]),
                    "metadata.name": "reports-6d8f7c9b5-x7k2p",
                }[field]
            elif "configMap" in source:
                data = config_data[item["key"]]
            else:
                data = secret_data[item["key"]]
                secret_paths.append(item["path"])
            payload[item["path"]] = File(data, mode=mode)
    writer = KubeletWriter(tmp_path / "app")
    writer.write(payload)
    assert secret_paths == ["db-password"]
    assert oct(volume["sources"][2]["secret"]["items"][0]["mode"]) == "0o400"

    class Settings(CanarySettings):
        model_config = CanaryConfigDict(
            downward_api_dir=None,
            projected_dirs=[str(writer.path)],
            projected_secret_keys=secret_paths,
        )
        role: str = label("role", default="canary")
        pod_name: str = pod_field("metadata.name", default="")
        log_level: str = configmap("log-level", default="debug")

    s = Settings()
    assert (s.role, s.pod_name, s.log_level) == ("stable", "reports-6d8f7c9b5-x7k2p", "info")
    snapshot = read_settings_volume(Settings, str(writer.path))
    assert snapshot is not None and "db-password" not in snapshot.files
