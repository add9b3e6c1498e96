"""The one output layer of the `billing` command line: words and tables for people, JSON for programs.

Every command prints through :func:`emit`. With ``--json`` (or ``-o json``, anywhere on the line)
it prints exactly one JSON document on stdout, normalised by :func:`to_json` whatever the
command handed over: every ``Decimal`` becomes a string with six decimal places (micro-credits,
rounded half-even), times become ISO 8601, tuples and dataclasses become objects or arrays.
Errors in JSON mode are one ``{"error": ..., "code": ...}`` document on stderr (``main.py``).

Without ``--json`` a command's ``render`` returns plain text or ``rich`` renderables (tables with
headers). Colour only reaches a terminal, and never when ``NO_COLOR`` is set (https://no-color.org).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any
from uuid import UUID

# Units as people say them: the one table lives in core.units (the invoice document words them too).
from billing_pipeline.core.units import RESOURCE_WORDS as RESOURCE_WORDS
from billing_pipeline.core.units import UNIT_WORDS as UNIT_WORDS
from billing_pipeline.core.units import resource_words as resource_words
from billing_pipeline.core.units import unit_words as unit_words

MICRO = Decimal("0.000001")


def decimal_text(value: Decimal) -> str:
    """A decimal as the JSON string docs/rules/units.md promises: six places, rounded half-even."""
    if not value.is_finite():
        return str(value)
    quantized = value.quantize(MICRO, rounding=ROUND_HALF_EVEN)
    return f"{quantized if quantized else abs(quantized):f}"  # never "-0.000000"


def normalise(value: Any) -> Any:
    """``value`` as plain JSON types, with the decimals of docs/rules/units.md (see :func:`decimal_text`)."""
    if value is None or isinstance(value, (bool, str, int, float)):
        return value
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, enum.Enum):
        return normalise(value.value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(k): normalise(v) for k, v in value.items()}
    if hasattr(value, "_asdict"):  # named tuples
        return normalise(value._asdict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return normalise(dataclasses.asdict(value))
    if isinstance(value, (list, tuple, set, frozenset)):
        return [normalise(v) for v in value]
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def to_json(data: Any) -> str:
    """One JSON document (indented) for ``data``, decimals with six places."""
    return json.dumps(normalise(data), indent=2, sort_keys=False, ensure_ascii=False)


def json_requested(args) -> bool:
    return bool(getattr(args, "json", False))


def colour_allowed(stream=None) -> bool:
    """Colour only on a terminal, and never with NO_COLOR set (to anything non-empty)."""
    stream = stream or sys.stdout
    if os.environ.get("NO_COLOR"):
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


def console(stream=None):
    """A rich Console on ``stream`` (default: the current stdout, so pytest's capture sees it)."""
    from rich.console import Console

    stream = stream or sys.stdout
    tty = bool(getattr(stream, "isatty", lambda: False)())
    # Piped or captured: never wrap a table row (scripts and `less -S` read whole lines).
    width = None if tty else 1000
    allowed = colour_allowed(stream)
    return Console(
        # color_system=None drops every style (bold too), not only colours.
        file=stream,
        width=width,
        no_color=not allowed,
        color_system="auto" if allowed else None,
        force_terminal=allowed or None,
        highlight=False,
        emoji=False,
        markup=False,
        soft_wrap=False,
    )


def table(columns: Sequence[str | tuple[str, str]], rows: Iterable[Sequence[Any]], title: str | None = None):
    """A table with headers. ``columns``: names, or ``(name, "right")`` for numbers."""
    from rich import box
    from rich.table import Table

    t = Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold"
    )  # styles reach only a console that allows them (see console())
    for column in columns:
        name, justify = (column, "left") if isinstance(column, str) else column
        t.add_column(name, justify=justify, overflow="fold")
    for row in rows:
        t.add_row(*("" if cell is None else str(cell) for cell in row))
    return t


def _print_human(result: Any) -> None:
    if result is None:
        return
    if isinstance(result, str):
        print(result)
        return
    items = result if isinstance(result, (list, tuple)) else [result]
    out = console()
    for item in items:
        if out.is_terminal:
            out.print(item)
            continue
        # Piped: the same text without the padding rich puts after the last column.
        with out.capture() as captured:
            out.print(item)
        sys.stdout.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))


def emit(args, data: Any, render: Callable[[Any], Any]) -> None:
    """Print ``data`` as JSON when ``--json`` was given, else ``render(data)``.

    ``render`` returns a string, a rich renderable (e.g. :func:`table`) or a list of those.
    """
    if json_requested(args):
        print(to_json(data))
    else:
        _print_human(render(data))


def credits(amount: Decimal) -> str:
    """An amount for people: thousands separated, all six decimals kept, sign explicit."""
    return f"{amount if amount else abs(amount):+,.6f}"  # a zero is "+0.000000", never "-0.000000"


def quantity(value: Decimal | None, places: int = 4) -> str:
    """A measured quantity for people (4 places by default); ``None`` is 0."""
    return f"{value or Decimal(0):,.{places}f}"
