"""The append-only credit ledger: the only code that writes credit_transactions and credits.

Jobs build ``Entry`` values and call ``post_entries`` (a batch, one transaction) or
``post_entry``; ``verify_ledger`` recomputes every balance and hash, holds every issued invoice
to the entries it names, and reports what is wrong.
"""

from billing_pipeline.ledger.checkpoint import chain_head, chain_heads
from billing_pipeline.ledger.entries import (
    MAX_ENTRY_AMOUNT,
    Entry,
    EntryType,
    IdempotencyConflict,
    LedgerInputError,
    ensure_demo_ledger_key,
    ledger_keyring,
    round_credits,
    to_amount,
)
from billing_pipeline.ledger.posting import PostResult, balance_of, post_entries, post_entry
from billing_pipeline.ledger.verify import LedgerProblem, verify_ledger

__all__ = [
    "MAX_ENTRY_AMOUNT",
    "Entry",
    "EntryType",
    "IdempotencyConflict",
    "LedgerInputError",
    "LedgerProblem",
    "PostResult",
    "balance_of",
    "chain_head",
    "chain_heads",
    "ensure_demo_ledger_key",
    "ledger_keyring",
    "post_entries",
    "post_entry",
    "round_credits",
    "to_amount",
    "verify_ledger",
]
