"""Units and resources as people say them: ``core_hour`` -> "core-hours" (docs/rules/units.md).

The one place: the command line (``cli.output``) and the invoice document (``invoicing.document``)
both word units through it.
"""

from __future__ import annotations

from decimal import Decimal

# Unit ids (pricing_configs.unit) -> (singular, plural).
UNIT_WORDS = {
    "core_hour": ("core-hour", "core-hours"),
    "gib_hour": ("GiB-hour", "GiB-hours"),
    "gpu_hour": ("GPU-hour", "GPU-hours"),
    "gib": ("GiB", "GiB"),
    "machine_hour": ("machine-hour", "machine-hours"),
}

RESOURCE_WORDS = {
    "cpu": "CPU",
    "memory": "memory",
    "gpu": "GPU",
    "storage": "storage",
    "network_egress": "network egress",
    "machine": "machine",
}


def unit_words(unit: str | None, quantity: Decimal | int | None = None) -> str:
    """``core_hour`` -> "core-hours" (or "core-hour" for a quantity of exactly 1)."""
    if unit is None:
        return ""
    singular, plural = UNIT_WORDS.get(unit, (unit.replace("_", "-"), unit.replace("_", "-") + "s"))
    return singular if quantity is not None and Decimal(quantity) == 1 else plural


def resource_words(resource: str | None) -> str:
    """``network_egress`` -> "network egress"."""
    return RESOURCE_WORDS.get(resource or "", (resource or "").replace("_", " "))
