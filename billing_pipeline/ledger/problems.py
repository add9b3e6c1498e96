"""A problem ``billing verify`` found in the ledger or the issued invoices (shared by the verifier and the checkpoint)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LedgerProblem:
    account_id: str | None  # None: a finding about the whole ledger (the legacy seal, invoice numbering)
    kind: str
    detail: str
    entry_id: int | None = None
    invoice_number: str | None = None  # the issued invoice the finding is about
