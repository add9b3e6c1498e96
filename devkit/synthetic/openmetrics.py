"""OpenMetrics text for a synthetic ``Cluster``, as cAdvisor and kube-state-metrics expose it.

``write_openmetrics(cluster, path)`` writes one sample per series and minute (timestamps in
seconds, each series contiguous and sorted by time, metric families contiguous, ``# EOF`` at
the end): the input ``promtool tsdb create-blocks-from openmetrics`` expects.

Series written (labels as the real exporters name them, docs/rules/ingestion.md):

* kube-state-metrics: ``kube_node_info``, ``kube_pod_info`` (node), ``kube_pod_labels``
  (``label_satusky_io_deployment_id`` / ``label_satusky_io_account_id`` for labelled
  deployments), ``kube_pod_owner`` (ReplicaSet), ``kube_replicaset_owner`` (Deployment),
  ``kube_pod_container_resource_requests`` (``resource`` cpu / memory / nvidia_com_gpu, with
  ``unit``), ``kube_persistentvolumeclaim_resource_requests_storage_bytes``,
  ``kube_persistentvolumeclaim_labels``.
* cAdvisor: ``container_cpu_usage_seconds_total`` (counter), ``container_memory_working_set_bytes``,
  ``container_network_transmit_bytes_total`` (per pod, ``interface="eth0"``); with
  ``pod_cgroup_series`` also the pod cgroup (``container=""``) and pause container
  (``container="POD"``) series that a correct pipeline must skip.
* blackbox exporter: ``probe_success{deployment_id}`` for probed deployments.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from devkit.synthetic.model import Cluster, Pod, replicaset_name

_NS = uuid.UUID("6f1c1d6e-5b8e-4a43-9a57-5a7e2b0c0001")


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    return "{" + ",".join(f'{k}="{_esc(v)}"' for k, v in pairs) + "}"


def _num(value: float | int) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


class _Writer:
    def __init__(self, out: IO[str], cluster: Cluster) -> None:
        self.out = out
        base = int(cluster.start.timestamp())
        self.ts = [f" {base + 60 * m}\n" for m in range(cluster.minutes)]

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.out.write(f"# TYPE {name} {kind}\n# HELP {name} {help_text}\n")

    def constant(self, sample: str, labels: str, value: float | int, minutes: Iterable[int]) -> None:
        prefix = f"{sample}{labels} {_num(value)}"
        ts = self.ts
        self.out.write("".join([prefix + ts[m] for m in minutes]))

    def values(self, sample: str, labels: str, points: Iterable[tuple[int, float | int]]) -> None:
        prefix = f"{sample}{labels} "
        ts = self.ts
        self.out.write("".join([prefix + _num(v) + ts[m] for m, v in points]))


def _pod_uid(pod: Pod, namespace: str) -> str:
    return str(uuid.uuid5(_NS, f"{namespace}/{pod.name}"))


def _counter(minutes: list[int], per_minute, restarts: tuple[int, ...] = ()) -> list[tuple[int, float | int]]:
    """Counter samples: 0 at the first present minute, + per_minute(m) between m and m+1.

    A restart at r makes the sample at r read only the usage since r-1 (see model docstring).
    Minutes missing from ``minutes`` (scrape gaps) still accumulate usage: the workload ran,
    only the scrape was lost.
    """
    if not minutes:
        return []
    points = []
    total = offset = 0
    first = minutes[0]
    restart_set = set(restarts)
    present = set(minutes)
    for m in range(first, minutes[-1] + 1):
        if m > first:
            step = per_minute(m - 1)
            total += step
            if m in restart_set:
                offset = total - step
        if m in present:
            points.append((m, total - offset))
    return points


def write_openmetrics(cluster: Cluster, path: str | Path) -> Path:
    """Write the cluster's series as OpenMetrics text to ``path`` and return the path."""
    path = Path(path)
    deployments = {d.id: d for d in cluster.deployments}
    pods = []
    for pod in cluster.pods:
        dep = deployments[pod.deployment_id]
        stop = cluster.minutes if pod.stop_minute is None else pod.stop_minute
        minutes = cluster.scraped_minutes(pod.start_minute, stop)
        pods.append((pod, dep, minutes, _pod_uid(pod, dep.namespace), replicaset_name(pod, dep)))

    with path.open("w", buffering=4 * 2**20) as out:
        w = _Writer(out, cluster)
        everything = cluster.scraped_minutes(0, cluster.minutes)

        w.family("kube_node_info", "gauge", "Information about a cluster node.")
        for node in cluster.nodes():
            w.constant(
                "kube_node_info",
                _labels(
                    [("node", node), ("kernel_version", "6.1.0"), ("container_runtime_version", "containerd://1.7.0")]
                ),
                1,
                everything,
            )

        w.family("kube_pod_info", "gauge", "Information about pod.")
        for pod, dep, minutes, uid, rs in pods:
            w.constant(
                "kube_pod_info",
                _labels(
                    [
                        ("namespace", dep.namespace),
                        ("pod", pod.name),
                        ("uid", uid),
                        ("node", pod.node),
                        ("host_ip", "10.0.0.1"),
                        ("pod_ip", "10.1.0.1"),
                        ("created_by_kind", "ReplicaSet"),
                        ("created_by_name", rs),
                        ("priority_class", ""),
                        ("host_network", "false"),
                    ]
                ),
                1,
                minutes,
            )

        w.family("kube_pod_labels", "gauge", "Kubernetes labels converted to Prometheus labels.")
        for pod, dep, minutes, uid, rs in pods:
            pairs = [("namespace", dep.namespace), ("pod", pod.name), ("uid", uid), ("label_app", dep.name)]
            if dep.labelled:
                pairs += [("label_satusky_io_account_id", dep.account_id), ("label_satusky_io_deployment_id", dep.id)]
            w.constant("kube_pod_labels", _labels(pairs), 1, minutes)

        w.family("kube_pod_owner", "gauge", "Information about the Pod's owner.")
        for pod, dep, minutes, uid, rs in pods:
            w.constant(
                "kube_pod_owner",
                _labels(
                    [
                        ("namespace", dep.namespace),
                        ("pod", pod.name),
                        ("uid", uid),
                        ("owner_kind", "ReplicaSet"),
                        ("owner_name", rs),
                        ("owner_is_controller", "true"),
                    ]
                ),
                1,
                minutes,
            )

        w.family("kube_replicaset_owner", "gauge", "Information about the ReplicaSet's owner.")
        replicasets: dict[tuple[str, str], tuple[str, set[int]]] = {}
        for pod, dep, minutes, uid, rs in pods:
            replicasets.setdefault((dep.namespace, rs), (dep.name, set()))[1].update(minutes)
        for (namespace, rs), (owner, minutes) in sorted(replicasets.items()):
            w.constant(
                "kube_replicaset_owner",
                _labels(
                    [
                        ("namespace", namespace),
                        ("replicaset", rs),
                        ("owner_kind", "Deployment"),
                        ("owner_name", owner),
                        ("owner_is_controller", "true"),
                    ]
                ),
                1,
                sorted(minutes),
            )

        w.family(
            "kube_pod_container_resource_requests", "gauge", "The number of requested request resource by a container."
        )
        for pod, dep, minutes, uid, rs in pods:
            for c in pod.containers:
                for resource, unit, value in (
                    ("cpu", "core", c.cpu_request),
                    ("memory", "byte", c.memory_request),
                    ("nvidia_com_gpu", "integer", c.gpu_request),
                ):
                    if value:
                        w.constant(
                            "kube_pod_container_resource_requests",
                            _labels(
                                [
                                    ("namespace", dep.namespace),
                                    ("pod", pod.name),
                                    ("uid", uid),
                                    ("container", c.name),
                                    ("node", pod.node),
                                    ("resource", resource),
                                    ("unit", unit),
                                ]
                            ),
                            value,
                            minutes,
                        )

        def cadvisor_labels(pod, dep, uid, container, image, extra=()):
            cgroup = f"/kubepods/burstable/pod{uid}" + (f"/{container}" if container not in ("",) else "")
            name = "" if container == "" else f"k8s_{container}_{pod.name}_{dep.namespace}_{uid}_0"
            return _labels(
                [
                    ("container", container),
                    *extra,
                    ("id", cgroup),
                    ("image", image),
                    ("name", name),
                    ("namespace", dep.namespace),
                    ("pod", pod.name),
                ]
            )

        w.family("container_cpu_usage_seconds", "counter", "Cumulative cpu time consumed in seconds.")
        for pod, dep, minutes, uid, rs in pods:
            for c in pod.containers:
                cores = c.cpu_cores
                w.values(
                    "container_cpu_usage_seconds_total",
                    cadvisor_labels(pod, dep, uid, c.name, c.image, [("cpu", "total")]),
                    _counter(minutes, lambda m, cores=cores: cores * 60, c.restart_minutes),
                )
            if cluster.pod_cgroup_series:
                total = sum(c.cpu_cores for c in pod.containers)
                w.values(
                    "container_cpu_usage_seconds_total",
                    cadvisor_labels(pod, dep, uid, "", "", [("cpu", "total")]),
                    _counter(minutes, lambda m: total * 60),
                )
                w.values(
                    "container_cpu_usage_seconds_total",
                    cadvisor_labels(pod, dep, uid, "POD", "registry.k8s.io/pause:3.9", [("cpu", "total")]),
                    _counter(minutes, lambda m: 0.001 * 60),
                )

        w.family("container_memory_working_set_bytes", "gauge", "Current working set in bytes.")
        for pod, dep, minutes, uid, rs in pods:
            for c in pod.containers:
                w.constant(
                    "container_memory_working_set_bytes",
                    cadvisor_labels(pod, dep, uid, c.name, c.image),
                    c.memory_bytes,
                    minutes,
                )
            if cluster.pod_cgroup_series:
                w.constant(
                    "container_memory_working_set_bytes",
                    cadvisor_labels(pod, dep, uid, "", ""),
                    sum(c.memory_bytes for c in pod.containers),
                    minutes,
                )
                w.constant(
                    "container_memory_working_set_bytes",
                    cadvisor_labels(pod, dep, uid, "POD", "registry.k8s.io/pause:3.9"),
                    1 * 2**20,
                    minutes,
                )

        w.family("container_network_transmit_bytes", "counter", "Cumulative count of bytes transmitted.")
        for pod, dep, minutes, uid, rs in pods:
            rate = pod.egress_bytes_per_minute
            w.values(
                "container_network_transmit_bytes_total",
                cadvisor_labels(pod, dep, uid, "", "", [("interface", "eth0")]),
                _counter(minutes, lambda m: rate),
            )

        w.family(
            "kube_persistentvolumeclaim_resource_requests_storage_bytes",
            "gauge",
            "The capacity of storage requested by the persistent volume claim.",
        )
        for pvc in cluster.pvcs:
            stop = cluster.minutes if pvc.stop_minute is None else pvc.stop_minute
            w.constant(
                "kube_persistentvolumeclaim_resource_requests_storage_bytes",
                _labels([("namespace", pvc.namespace), ("persistentvolumeclaim", pvc.name)]),
                pvc.size_bytes,
                cluster.scraped_minutes(pvc.start_minute, stop),
            )

        w.family("kube_persistentvolumeclaim_labels", "gauge", "Kubernetes labels converted to Prometheus labels.")
        for pvc in cluster.pvcs:
            stop = cluster.minutes if pvc.stop_minute is None else pvc.stop_minute
            pairs = [("namespace", pvc.namespace), ("persistentvolumeclaim", pvc.name)]
            if pvc.deployment_id:
                dep = deployments.get(pvc.deployment_id)
                if dep is not None:
                    pairs.append(("label_satusky_io_account_id", dep.account_id))
                pairs.append(("label_satusky_io_deployment_id", pvc.deployment_id))
            w.constant(
                "kube_persistentvolumeclaim_labels", _labels(pairs), 1, cluster.scraped_minutes(pvc.start_minute, stop)
            )

        probed = [d for d in cluster.deployments if d.probed]
        if probed:
            w.family("probe_success", "gauge", "Displays whether or not the probe was a success.")
            for d in probed:
                w.values(
                    "probe_success",
                    _labels([("deployment_id", d.id), ("instance", f"https://{d.name}.example"), ("job", "blackbox")]),
                    [(m, 0 if any(a <= m < b for a, b in d.probe_down) else 1) for m in everything],
                )

        out.write("# EOF\n")
    return path
