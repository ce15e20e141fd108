"""The Kubernetes manifests (manifests/kubernetes/): every resource validates against the
newest Kubernetes schema ``kubernetes-validate`` ships (strict: no unknown fields); the
Deployment is what docs/deploy.md promises (≥ 2 non-root replicas, read-only root file
system, requests and limits, /readyz and /healthz probes, a preStop pause); the PDB,
NetworkPolicy and Service select its pods; the ConfigMap's signoff.yaml loads as signoff
settings with ``server.trusted_proxies`` narrowed to the ingress, and its policy loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from bot.policy.holder import PolicyHolder
from bot.settings import parse_settings

ROOT = Path(__file__).resolve().parents[2] / "manifests" / "kubernetes"
FILES = sorted(p for p in ROOT.glob("*.yaml") if p.name != "kustomization.yaml")


def resources() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in FILES:
        found.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return found


def one(kind: str) -> dict[str, Any]:
    [resource] = [r for r in resources() if r["kind"] == kind]
    return resource


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_resource_validates_against_current_kubernetes(path: Path) -> None:
    version = kubernetes_validate.latest_version()
    for doc in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(doc, version, strict=True)  # raises when invalid


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((ROOT / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in FILES)


def test_deployment_is_replicated_locked_down_probed_and_drained() -> None:
    deployment = one("Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] >= 2
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    [container] = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    resources_ = container["resources"]
    assert {"cpu", "memory"} <= set(resources_["requests"])
    assert {"cpu", "memory"} <= set(resources_["limits"])
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert 0 < pause < pod["terminationGracePeriodSeconds"]
    env = {e["name"]: e for e in container["env"]}
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "signoff-db"
    assert any(v["secret"]["secretName"] == "signoff-keys" for v in pod["volumes"] if "secret" in v)
    labels = spec["template"]["metadata"]["labels"]
    for kind in ("Service", "PodDisruptionBudget", "NetworkPolicy"):
        resource = one(kind)["spec"]
        selector = resource.get("selector") or resource["podSelector"]
        selector = selector.get("matchLabels", selector)
        assert selector.items() <= labels.items(), kind
    assert one("PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_configuration_loads_and_trusts_only_the_ingress(tmp_path: Path) -> None:
    config = next(r for r in resources() if r["metadata"]["name"] == "signoff-config")
    deployment = one("Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    ingress = next(e["value"] for e in container["env"] if e["name"] == "SIGNOFF_INGRESS_PROXY")
    environ = {
        "SIGNOFF_INGRESS_PROXY": ingress,
        "DATABASE_URL": "postgresql+psycopg://signoff@postgres-rw:5432/signoff",
    }
    settings = parse_settings(config["data"]["signoff.yaml"], environ=environ)
    assert settings.server.workers == 1
    assert settings.database_url.startswith("postgresql+psycopg://")
    networks = [n.network for n in settings.server.trusted_proxies]
    assert networks and all(n.num_addresses <= 256 for n in networks)  # not 10.0.0.0/8
    policies = next(r for r in resources() if r["metadata"]["name"] == "signoff-policies")
    for name, text in policies["data"].items():
        (tmp_path / name).write_text(text)
    assert PolicyHolder([tmp_path]).current.digest.startswith("sha256:")
