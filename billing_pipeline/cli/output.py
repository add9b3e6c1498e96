"""Printing results for people (plain words) or programs (``--json``)."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Callable


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)  # exact: never through float
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if hasattr(value, "_asdict"):
        return value._asdict()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def to_json(data: Any) -> str:
    return json.dumps(data, default=_default, indent=2, sort_keys=False)


def emit(args, data: Any, render: Callable[[Any], str]) -> None:
    """Print ``data`` as JSON when ``--json`` was given, else as ``render(data)``."""
    print(to_json(data) if getattr(args, "json", False) else render(data))


def credits(amount: Decimal) -> str:
    """An amount for people: thousands separated, all six decimals kept, sign explicit."""
    return f"{amount if amount else abs(amount):+,.6f}"  # a zero is "+0.000000", never "-0.000000"
