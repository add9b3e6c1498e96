"""The declarative description of a synthetic cluster.

A ``Cluster`` covers ``minutes`` one-minute scrape steps from ``start`` (a UTC datetime on a
minute boundary). Everything inside it is placed in *minute offsets* from ``start``: a pod with
``start_minute=30, stop_minute=90`` exists for the samples at minutes 30..89 (stop is
exclusive), i.e. exactly 60 one-minute samples.

Semantics the generator guarantees (so that tests can state exact expected figures):

* CPU: a container using ``c`` cores in minute ``m`` adds ``60*c`` core-seconds between the
  samples at ``m`` and ``m+1``. The counter reads 0 at the pod's first sample. A restart at
  minute ``r`` resets the counter: the sample at ``r`` reads only the last minute's usage
  (the new process started just after the sample at ``r-1``), so no usage is lost and a
  correct ``increase()`` still sees ``c`` cores for every present minute.
* Memory: the working set is constant per container (``memory_bytes``).
* Requests (cpu cores, memory bytes, GPUs) are exposed by kube-state-metrics for every
  present minute of the pod.
* Egress: ``egress_bytes_per_minute`` on the pod's network counter (interface ``eth0``).
* PVCs: requested storage bytes for every minute of ``[start_minute, stop_minute)``.
* ``scrape_gaps``: minute ranges ``(from, to)`` in which no sample at all exists (Prometheus
  down); any hour containing one is incomplete.
* Rentals are platform rows (``billing.machine_usages``), written as given, bad rows included
  (that is how the quarantine is exercised).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

GIB = 2**30
MIB = 2**20


@dataclass(frozen=True)
class Account:
    id: str
    name: str
    email: str | None = None
    # Any further billing.accounts column (low_balance_threshold, volume_policy ...).
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Deployment:
    """A Kubernetes Deployment of the platform.

    ``labelled``: its pods and PVCs carry ``satusky.io/deployment-id`` (else only the legacy
    owner chain pod -> ReplicaSet -> Deployment identifies them).
    ``registered``: the platform knows it (a row in ``billing.deployments``); an unregistered
    deployment is "unknown" and its usage must stay unattributed.
    ``probe_down``: minute ranges in which the blackbox probe fails (``probe_success`` 0);
    a probe series is only written when ``probed`` is true.
    """

    id: str
    account_id: str
    namespace: str
    name: str
    labelled: bool = True
    registered: bool = True
    probed: bool = False
    probe_down: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class Container:
    name: str
    cpu_cores: float = 0.0
    memory_bytes: int = 0
    cpu_request: float = 0.0
    memory_request: int = 0
    gpu_request: int = 0
    restart_minutes: tuple[int, ...] = ()
    image: str = "registry.satusky.io/app:1.0"


@dataclass(frozen=True)
class Pod:
    name: str
    deployment_id: str
    node: str
    containers: tuple[Container, ...]
    start_minute: int = 0
    stop_minute: int | None = None  # exclusive; None = until the end of the cluster window
    egress_bytes_per_minute: int = 0
    replicaset: str | None = None  # default: "<deployment name>-<10 chars>"


@dataclass(frozen=True)
class Pvc:
    namespace: str
    name: str
    size_bytes: int
    deployment_id: str | None = None  # labelled with this deployment id when set
    start_minute: int = 0
    stop_minute: int | None = None


@dataclass(frozen=True)
class Rental:
    """A ``billing.machine_usages`` row, written as given (None = SQL NULL)."""

    id: str
    account_id: str | None
    machine_id: str | None
    machine_type: str | None
    node_name: str | None
    started_at: datetime | None
    ended_at: datetime | None = None
    updated_at: datetime | None = None  # None: the database default (now())


@dataclass(frozen=True)
class Cluster:
    start: datetime
    minutes: int
    accounts: tuple[Account, ...] = ()
    deployments: tuple[Deployment, ...] = ()
    pods: tuple[Pod, ...] = ()
    pvcs: tuple[Pvc, ...] = ()
    rentals: tuple[Rental, ...] = ()
    scrape_gaps: tuple[tuple[int, int], ...] = ()
    # cAdvisor also exposes pod-level cgroups (container="") and the pause container
    # (container="POD"); the pipeline must ignore them. Off for big benchmark clusters.
    pod_cgroup_series: bool = True

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            object.__setattr__(self, "start", self.start.replace(tzinfo=UTC))
        if self.start.second or self.start.microsecond:
            raise ValueError("Cluster.start must be on a minute boundary")

    @property
    def end(self) -> datetime:
        return self.start + timedelta(minutes=self.minutes)

    def at(self, minute: int) -> datetime:
        """The UTC time of a minute offset."""
        return self.start + timedelta(minutes=minute)

    def deployment(self, deployment_id: str) -> Deployment:
        for d in self.deployments:
            if d.id == deployment_id:
                return d
        raise KeyError(deployment_id)

    def nodes(self) -> list[str]:
        return sorted({p.node for p in self.pods} | {r.node_name for r in self.rentals if r.node_name})

    def scraped_minutes(self, start: int, stop: int) -> list[int]:
        """Minutes in [start, stop) inside the window and outside every scrape gap."""
        lo, hi = max(start, 0), min(stop, self.minutes)
        return [m for m in range(lo, hi) if not any(a <= m < b for a, b in self.scrape_gaps)]


def replicaset_name(pod: Pod, deployment: Deployment) -> str:
    """The ReplicaSet owning a pod: explicit, else derived deterministically from the deployment."""
    return pod.replicaset or f"{deployment.name}-{zlib.crc32(deployment.id.encode()):010d}"


Attribution = Literal["label", "owner_chain", "unattributed"]
