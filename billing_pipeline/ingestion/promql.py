"""The PromQL of one hour: a handful of aggregated queries, never one per pod.

A ranged run sends each as one range query over several hours with a one-hour step
(``metrics.fetch_hours``): each step is the hour's own evaluation below.

Window: every query is evaluated at ``hour + 1h - 1ms`` with a ``[1h]`` range, i.e. over
``[hour - 1ms, hour + 1h - 1ms]``. With 1-minute samples that is exactly the 60 samples of
``[hour, hour + 1h)``: Prometheus 2.x range selectors include both ends, so a window ending at
``hour + 1h`` would also take the next hour's first sample (and Prometheus 3's left-open
windows agree with this choice). ``increase()`` extrapolates the counter to the window edges
(the usage between the last sample of the hour and the first of the next one is thus counted
once, in this hour), which is the "small extrapolation error" of docs/rules/ingestion.md.

Each query joins several aggregations with ``or``, each tagged by ``label_replace`` with a
``q`` label saying what the value is. Everything is summed by Prometheus.
"""

from __future__ import annotations

from datetime import datetime, timedelta

WINDOW = "1h"
EVAL_OFFSET = timedelta(hours=1) - timedelta(milliseconds=1)

_C = '{container!="",container!="POD"}'
_R = '{resource=~"cpu|memory|nvidia_com_gpu"}'


def _tag(expr: str, q: str) -> str:
    return f'label_replace({expr}, "q", "{q}", "", "")'


def _union(*parts: str) -> str:
    return "\n or ".join(parts)


CONTAINERS = _union(
    _tag(
        f"sum by (namespace, pod, container) (increase(container_cpu_usage_seconds_total{_C}[{WINDOW}]))",
        "cpu_increase",
    ),
    _tag(
        f"sum by (namespace, pod, container) (sum_over_time(container_memory_working_set_bytes{_C}[{WINDOW}]))",
        "memory_sum",
    ),
    _tag(
        f"sum by (namespace, pod, container) (count_over_time(container_memory_working_set_bytes{_C}[{WINDOW}]))",
        "usage_minutes",
    ),
    _tag(
        f"sum by (namespace, pod, container, resource) (sum_over_time(kube_pod_container_resource_requests{_R}[{WINDOW}]))",
        "request_sum",
    ),
    _tag(
        f"max by (namespace, pod, container) (count_over_time(kube_pod_container_resource_requests{_R}[{WINDOW}]))",
        "request_minutes",
    ),
)
"""Per container: cpu counter increase, working-set sum and sample count, request sums and counts."""

PODS = _union(
    _tag(f"sum by (namespace, pod, node) (count_over_time(kube_pod_info[{WINDOW}]))", "node_minutes"),
    _tag(
        f'group by (namespace, pod, label_satusky_io_deployment_id) (last_over_time(kube_pod_labels{{label_satusky_io_deployment_id!=""}}[{WINDOW}]))',
        "label",
    ),
    _tag(
        f'group by (namespace, pod, owner_name) (last_over_time(kube_pod_owner{{owner_kind="ReplicaSet"}}[{WINDOW}]))',
        "owner",
    ),
    _tag(
        f'group by (namespace, replicaset, owner_name) (last_over_time(kube_replicaset_owner{{owner_kind="Deployment"}}[{WINDOW}]))',
        "replicaset_owner",
    ),
    _tag(f"sum by (namespace, pod) (increase(container_network_transmit_bytes_total[{WINDOW}]))", "egress_increase"),
)
"""Per pod: node (minutes per node), deployment label, ReplicaSet owner, egress; per ReplicaSet: its Deployment."""

VOLUMES = _union(
    _tag(
        f"sum by (namespace, persistentvolumeclaim) (sum_over_time(kube_persistentvolumeclaim_resource_requests_storage_bytes[{WINDOW}]))",
        "bytes_sum",
    ),
    _tag(
        f"max by (namespace, persistentvolumeclaim) (max_over_time(kube_persistentvolumeclaim_resource_requests_storage_bytes[{WINDOW}]))",
        "bytes_max",
    ),
    _tag(
        f'group by (namespace, persistentvolumeclaim, label_satusky_io_deployment_id) (last_over_time(kube_persistentvolumeclaim_labels{{label_satusky_io_deployment_id!=""}}[{WINDOW}]))',
        "label",
    ),
)
"""Per PVC: requested bytes summed over present minutes, the largest request, the deployment label."""

SCRAPES = _union(
    'label_replace(count(count_over_time(container_cpu_usage_seconds_total[1m])), "source", "cAdvisor", "", "")',
    'label_replace(count(count_over_time(kube_pod_info[1m])), "source", "kube-state-metrics", "", "")',
)
"""Range query, one step per minute of the hour: which minutes have samples from each exporter."""


def eval_time(hour: datetime) -> float:
    """UNIX seconds at which the hour's queries are evaluated (the hour's step of a range query
    with a one-hour step: ``metrics.fetch_hours``)."""
    return (hour + EVAL_OFFSET).timestamp()


def minute_steps(hour: datetime) -> tuple[float, float]:
    """First and last evaluation time of the per-minute range query (step 60 s): minute k of
    the hour is evaluated at ``hour + 60k + 59.999 s`` over ``[1m]``, i.e. it sees the sample
    at ``hour + 60k`` and no other."""
    first = hour.timestamp() + 59.999
    return first, first + 59 * 60
