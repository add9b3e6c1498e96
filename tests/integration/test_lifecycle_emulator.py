"""The Kubernetes emulator refuses what kube-apiserver refuses, over HTTP through the official client."""

from __future__ import annotations

import json

import kubernetes
import pytest

from billing_pipeline.resources.cluster import ClusterCallError
from tests.support.kube import cluster, ingress_spec, kube, seed_deployment


@pytest.fixture
def api(kube):
    return kubernetes.config.new_client_from_config(config_file=str(kube.kubeconfig_path))


def _refusal(exc: kubernetes.client.ApiException) -> dict:
    return json.loads(exc.body)


def test_an_ingress_without_rules_or_default_backend_is_invalid_422(kube, api):
    seed_deployment(kube, "ns", "web", "dep-1", "acme")
    net = kubernetes.client.NetworkingV1Api(api)
    with pytest.raises(kubernetes.client.ApiException) as err:
        net.patch_namespaced_ingress(
            "web", "ns", [{"op": "remove", "path": "/spec/rules"}], _content_type="application/json-patch+json"
        )
    status = _refusal(err.value)
    assert err.value.status == 422 and status["kind"] == "Status" and status["status"] == "Failure"
    assert status["reason"] == "Invalid" and status["code"] == 422
    assert status["message"].startswith('Ingress.networking.k8s.io "web" is invalid: spec: ')
    assert "either `defaultBackend` or `rules` must be specified" in status["message"]
    assert status["details"]["causes"][0]["field"] == "spec"
    assert kube.get("Ingress", "ns", "web")["spec"]["rules"]  # nothing stored


def test_schema_validation_refuses_a_path_without_path_type_and_unknown_fields(kube, api):
    # The client checks typed bodies itself; JSON patches reach the server unchecked, as they would
    # a real kube-apiserver, which then validates the patched object against the schema.
    seed_deployment(kube, "ns", "web", "dep-1", "acme")
    net = kubernetes.client.NetworkingV1Api(api)
    with pytest.raises(kubernetes.client.ApiException) as err:
        net.patch_namespaced_ingress(
            "web",
            "ns",
            [{"op": "remove", "path": "/spec/rules/0/http/paths/0/pathType"}],
            _content_type="application/json-patch+json",
        )
    assert err.value.status == 422 and "'pathType' is a required property" in _refusal(err.value)["message"]
    core = kubernetes.client.CoreV1Api(api)
    with pytest.raises(kubernetes.client.ApiException) as err:
        core.patch_namespaced_config_map(
            "web-config",
            "ns",
            [{"op": "add", "path": "/colour", "value": "red"}],
            _content_type="application/json-patch+json",
        )
    assert err.value.status == 422 and "colour" in _refusal(err.value)["message"]
    with pytest.raises(kubernetes.client.ApiException) as err:
        core.create_namespaced_service("ns", {"metadata": {"name": "Not_A_Name"}, "spec": {"ports": [{"port": 80}]}})
    assert err.value.status == 422 and "metadata.name" in _refusal(err.value)["message"]


def test_a_stale_resource_version_is_a_409_conflict_and_immutable_fields_are_422(kube, api, cluster):
    seed_deployment(kube, "ns", "web", "dep-1", "acme")
    apps = kubernetes.client.AppsV1Api(api)
    read = cluster.get("Deployment", "ns", "web")
    cluster.replace("Deployment", "ns", {**read, "spec": {**read["spec"], "replicas": 3}})
    with pytest.raises(ClusterCallError) as err:  # the same, stale, resourceVersion again
        cluster.replace("Deployment", "ns", {**read, "spec": {**read["spec"], "replicas": 5}})
    assert err.value.status == 409 and "the object has been modified" in str(err.value)
    assert kube.get("Deployment", "ns", "web")["spec"]["replicas"] == 3
    fresh = cluster.get("Deployment", "ns", "web")
    fresh["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    with pytest.raises(kubernetes.client.ApiException) as exc:
        apps.replace_namespaced_deployment("web", "ns", fresh)
    assert exc.value.status == 422 and "spec.selector" in _refusal(exc.value)["message"]
    assert "field is immutable" in _refusal(exc.value)["message"]


def test_set_based_label_selectors(kube, cluster):
    for name, tier in (("a", "web"), ("b", "db"), ("c", None)):
        kube.put("ConfigMap", "ns", name, labels={"tier": tier} if tier else {"other": "x"})
    names = lambda sel: sorted(o["metadata"]["name"] for o in cluster.list("ConfigMap", "ns", sel))  # noqa: E731
    assert names("tier in (web,db)") == ["a", "b"]
    assert names("tier notin (web)") == ["b", "c"]
    assert names("tier,tier!=db") == ["a"]
    assert names("!tier") == ["c"]


def test_volume_snapshots_and_their_readiness(kube, cluster):
    seed_deployment(kube, "ns", "web", "dep-1", "acme", pvcs={"data": "1Gi"})
    body = {
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshot",
        "metadata": {"name": "s1"},
        "spec": {"source": {"persistentVolumeClaimName": "data"}},
    }
    created = cluster.create("VolumeSnapshot", "ns", body).object
    assert created["status"]["readyToUse"] is True and created["status"]["restoreSize"] == "1Gi"
    assert cluster.create("VolumeSnapshot", "ns", body).outcome == "exists"
    kube.set_snapshot_mode("pending")
    pending = cluster.create("VolumeSnapshot", "ns", {**body, "metadata": {"name": "s2"}}).object
    assert pending["status"]["readyToUse"] is False
    kube.set_snapshot_ready("ns", "s2")
    assert cluster.get("VolumeSnapshot", "ns", "s2")["status"]["readyToUse"] is True
    missing = cluster.create(
        "VolumeSnapshot",
        "ns",
        {**body, "metadata": {"name": "s3"}, "spec": {"source": {"persistentVolumeClaimName": "nope"}}},
    )
    assert "not found" in missing.object["status"]["error"]["message"]
    with pytest.raises(ClusterCallError) as err:
        cluster.create("VolumeSnapshot", "ns", {**body, "metadata": {"name": "s4"}, "spec": {"source": {}}})
    assert err.value.status == 422
