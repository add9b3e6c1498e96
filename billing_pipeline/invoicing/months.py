"""Calendar months (UTC) as month-end sees them: the one month parser and bounds live in
``core.times``; this module names them for the invoicing domain."""

from __future__ import annotations

from billing_pipeline.core.times import month_bounds, month_of, month_text, next_month, parse_month

__all__ = ["month_bounds", "month_of", "month_text", "next_month", "parse_month"]
