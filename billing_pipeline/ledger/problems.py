"""A problem ``billing verify`` found in the ledger (shared by the verifier and the checkpoint)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LedgerProblem:
    account_id: str
    kind: str
    detail: str
    entry_id: int | None = None
