"""The demo's scripted history: entries posted "at" a moment of the story.

The demo tells one timeline (the opening credit before the usage it pays for), so it posts its
opening credits with the product's clock stopped at that moment, as the tests' ``frozen_clock``
does. The product itself has no such door (``billing_pipeline.core.clock``): this lives in
devkit, which the product never imports.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from billing_pipeline.core import clock


@contextmanager
def posted_at(moment: datetime) -> Iterator[None]:
    """Within the block, ``system_now()`` is ``moment`` (aware UTC)."""
    previous = clock._frozen_at
    clock._frozen_at = clock.clock_input(moment, "posted_at")
    try:
        yield
    finally:
        clock._frozen_at = previous
