"""The append-only credit ledger: the only code that writes credit_transactions and credits."""
