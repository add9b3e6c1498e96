"""Ready-made clusters: a realistic many-pod cluster for benchmarks and the demo.

``generated_cluster(start, minutes, pods=...)`` spreads ``pods`` pods over deployments of
``pods_per_deployment`` replicas, ``accounts`` accounts and ``nodes`` nodes, deterministically
(same arguments, same cluster). One deployment in ten uses the legacy owner chain only, one in
fifty is unknown to the platform; every tenth pod has a 10 GiB PVC; one account in five rents
the nodes named ``rented-<n>``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from devkit.synthetic.model import (
    GIB,
    MIB,
    Account,
    Cluster,
    Container,
    Deployment,
    Pod,
    Pvc,
    Rental,
)


def generated_cluster(
    start: datetime,
    minutes: int,
    *,
    pods: int = 1000,
    pods_per_deployment: int = 2,
    accounts: int = 50,
    nodes: int = 100,
    pod_cgroup_series: bool = False,
) -> Cluster:
    account_rows = tuple(Account(f"acct-{i:04d}", f"Account {i}", f"owner{i}@example.com") for i in range(accounts))
    deployments: list[Deployment] = []
    pod_rows: list[Pod] = []
    pvcs: list[Pvc] = []
    n_deployments = (pods + pods_per_deployment - 1) // pods_per_deployment
    for d in range(n_deployments):
        account = account_rows[d % accounts]
        dep = Deployment(
            id=f"dep-{d:05d}",
            account_id=account.id,
            namespace=f"ns-{account.id}",
            name=f"app-{d:05d}",
            labelled=(d % 10 != 9),
            registered=(d % 50 != 49),
        )
        deployments.append(dep)
        for r in range(pods_per_deployment):
            i = d * pods_per_deployment + r
            if i >= pods:
                break
            cpu = 0.05 + (i % 20) * 0.05
            pod_rows.append(
                Pod(
                    name=f"{dep.name}-{i:06d}",
                    deployment_id=dep.id,
                    node=f"node-{i % nodes:03d}",
                    containers=(
                        Container(
                            "app",
                            cpu_cores=cpu,
                            memory_bytes=(128 + (i % 16) * 64) * MIB,
                            cpu_request=0.25,
                            memory_request=512 * MIB,
                            gpu_request=1 if i % 97 == 0 else 0,
                        ),
                    ),
                    egress_bytes_per_minute=(i % 7) * MIB,
                )
            )
            if i % 10 == 0:
                pvcs.append(Pvc(dep.namespace, f"data-{dep.name}-{i:06d}", 10 * GIB, deployment_id=dep.id))
    rentals = tuple(
        Rental(
            f"rent-{n:04d}",
            account_rows[n % accounts].id,
            f"m-{n:04d}",
            "gpu-large" if n % 2 else "cpu-medium",
            f"rented-{n:03d}",
            start - timedelta(hours=1),
            None,
        )
        for n in range(0, accounts, 5)
    )
    return Cluster(
        start=start,
        minutes=minutes,
        accounts=account_rows,
        deployments=tuple(deployments),
        pods=tuple(pod_rows),
        pvcs=tuple(pvcs),
        rentals=rentals,
        pod_cgroup_series=pod_cgroup_series,
    )
