"""Prometheus as a Dagster resource (``prometheus-api-client``), URL from ``PROMETHEUS_URL``."""

from __future__ import annotations

import os
import re
from datetime import datetime

import dagster as dg
import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from pydantic import PrivateAttr
from urllib3.util.retry import Retry

from billing_pipeline.core.errors import BillingError, ConfigurationError

DEFAULT_TIMEOUT_SECONDS = 600.0
"""Per query. Generous: the hour's queries at 100,000 deployments take minutes on a small server,
and a run that waits is better than one that fails every hour."""


class PrometheusUnavailable(BillingError):
    """Prometheus did not answer (or answered with an error): nothing was written."""


def _describe(exc: Exception, timeout: float) -> str:
    """A short reason: urllib3's messages carry the whole (URL-encoded) query otherwise."""
    # A read timeout arrives as a ConnectionError when urllib3's retries are exhausted (read=0).
    if isinstance(exc, requests.Timeout) or "Read timed out" in str(exc):
        return f"no answer within {timeout:g}s"
    if isinstance(exc, requests.ConnectionError):
        errno = re.search(r"\[Errno -?\d+\] [^'\")]+", str(exc))
        return f"cannot connect ({errno.group(0)})" if errno else "cannot connect"
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


class PrometheusResource(dg.ConfigurableResource):
    """Instant and range queries against one Prometheus server.

    Every failure (connection refused, timeout, HTTP error, query error) is raised as
    ``PrometheusUnavailable`` naming the URL and what was being done, so that an hourly asset
    can say "Prometheus at URL did not answer for hour H" and write nothing.
    """

    url: str
    # Unset: PROMETHEUS_TIMEOUT_SECONDS, else DEFAULT_TIMEOUT_SECONDS. An hour's queries grow with
    # the fleet: at 100,000 deployments the containers query alone ran 60-120 s on two cores, so
    # a timeout sized for a small cluster fails a large one every hour.
    timeout_seconds: float | None = None
    retries: int = 2

    _client: PrometheusConnect | None = PrivateAttr(default=None)

    def timeout(self) -> float:
        if self.timeout_seconds is not None:
            return self.timeout_seconds
        raw = os.environ.get("PROMETHEUS_TIMEOUT_SECONDS", "").strip()
        if not raw:
            return DEFAULT_TIMEOUT_SECONDS
        try:
            value = float(raw)
        except ValueError:
            value = 0.0
        if not value > 0 or value == float("inf"):
            raise ConfigurationError(
                f"PROMETHEUS_TIMEOUT_SECONDS={raw!r} is not a number of seconds above zero; "
                f"set it to e.g. {DEFAULT_TIMEOUT_SECONDS:g}, or unset it for that default."
            )
        return value

    def client(self) -> PrometheusConnect:
        if self._client is None:
            retry = Retry(
                total=self.retries,
                connect=self.retries,
                read=0,
                backoff_factor=0.2,
                status_forcelist=(502, 503, 504),
                allowed_methods=None,
            )
            self._client = PrometheusConnect(
                url=self.url.rstrip("/"), retry=retry, timeout=self.timeout(), method="POST"
            )
        return self._client

    def _fail(self, what: str, exc: Exception) -> PrometheusUnavailable:
        detail = _describe(exc, self.timeout())
        return PrometheusUnavailable(
            f"Prometheus at {self.url} did not answer {what}: {detail}. "
            "Nothing was written for it; check that Prometheus runs (PROMETHEUS_URL), then run it again."
        )

    def query(self, promql: str, at: float | datetime, *, what: str = "a query") -> list[dict]:
        """An instant query evaluated at ``at`` (UNIX seconds, millisecond precision kept)."""
        ts = at.timestamp() if isinstance(at, datetime) else at
        try:
            return self.client().custom_query(promql, params={"time": f"{ts:.3f}"})
        except (requests.RequestException, PrometheusApiClientException, ValueError) as exc:
            raise self._fail(what, exc) from None

    def query_range(
        self, promql: str, start: float, end: float, step_seconds: float, *, what: str = "a range query"
    ) -> list[dict]:
        """A range query; ``start``/``end`` in UNIX seconds (millisecond precision kept)."""
        try:
            # The client rounds start/end to whole seconds; pass them as params to keep the ms.
            return self.client().custom_query_range(
                promql,
                datetime.fromtimestamp(start),
                datetime.fromtimestamp(end),
                str(step_seconds),
                params={"start": f"{start:.3f}", "end": f"{end:.3f}"},
            )
        except (requests.RequestException, PrometheusApiClientException, ValueError) as exc:
            raise self._fail(what, exc) from None
