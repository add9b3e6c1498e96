"""What happens to a deployment's PVCs under each volume policy: the lifecycle's one dispatch.

``HANDLING`` has exactly one entry per value of ``core.volume_policies.VOLUME_POLICIES`` (the
list the database's CHECK and the dbt staging test use; ``tests/unit/test_volume_policies.py``
holds it to that list). The cleanup, the preview, ``billing status`` and the notices ask
``handling(policy)`` what a policy does instead of comparing its name, so a policy the database
accepts and the lifecycle does not know fails loudly, naming the account, never falls through
to another policy's behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from billing_pipeline.core.errors import BillingError
from billing_pipeline.core.volume_policies import VOLUME_POLICIES


@dataclass(frozen=True)
class VolumeHandling:
    """One policy's treatment of PVCs once their deployment is cleaned up.

    ``retained``: the PVCs are kept ``volume_retention_days`` after expiry, then deleted (a
    re-activation in that time cancels the deletion). ``snapshot_first``: each PVC is captured as
    a CSI VolumeSnapshot and deleted only once it is ready; the snapshot is kept
    ``volume_retention_days``. Neither: deleted with their data at expiry.
    ``words`` (``billing status``) and ``sentence`` (the idle-deletion notice) take ``{days}``.
    """

    retained: bool
    snapshot_first: bool
    words: str
    sentence: str


HANDLING: dict[str, VolumeHandling] = {
    "delete": VolumeHandling(
        retained=False,
        snapshot_first=False,
        words="delete (volumes deleted with their data at expiry)",
        sentence="Its PersistentVolumeClaims are deleted with their data (volume policy: delete).",
    ),
    "retain": VolumeHandling(
        retained=True,
        snapshot_first=False,
        words="retain (volumes kept {days} days after expiry, then deleted with their data)",
        sentence="Its PersistentVolumeClaims are kept for {days} days under your retain policy, then deleted with "
        "their data.",
    ),
    "snapshot": VolumeHandling(
        retained=False,
        snapshot_first=True,
        words="snapshot (each volume captured as a CSI VolumeSnapshot at expiry and deleted once the snapshot is "
        "ready; snapshots kept {days} days, then deleted)",
        sentence="Its PersistentVolumeClaims are each captured as a VolumeSnapshot first and deleted once the "
        "snapshot is ready; the snapshots are kept {days} days, then deleted.",
    ),
}


class UnknownVolumePolicy(BillingError):
    """A volume policy the lifecycle has no handling for."""


def handling(policy: str, account_id: str | None = None) -> VolumeHandling:
    """What ``policy`` does with PVCs; an error naming the account for a policy not handled."""
    try:
        return HANDLING[policy]
    except KeyError:
        whose = f" of account {account_id}" if account_id else ""
        raise UnknownVolumePolicy(
            f"volume policy {policy!r}{whose} has no lifecycle handling (the policies are "
            f"{', '.join(VOLUME_POLICIES)}: dbt_project/dbt_project.yml var volume_policies); set the account's "
            "volume_policy to one of them, or add the policy to billing_pipeline/lifecycle/volumes.py"
        ) from None


def retained_policies() -> list[str]:
    """The policies whose PVCs wait out ``volume_retention_days`` after expiry."""
    return [policy for policy, h in HANDLING.items() if h.retained]


def volumes_delete_after(account, now: datetime) -> datetime:
    """When the PVCs of a deployment cleaned up at ``now`` may go (``account``: a store.Account)."""
    if handling(account.volume_policy, account.id).retained:
        return now + timedelta(days=account.volume_retention_days)
    return now
