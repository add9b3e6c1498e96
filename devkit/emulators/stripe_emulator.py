"""localstripe on 127.0.0.1, with fresh in-memory state on every start.

localstripe's own CLI binds every interface and keeps its state in ``/tmp/localstripe.pickle``
(shared by every process on the machine, so parallel tests would leak customers into each
other). This wrapper runs its aiohttp app in a child process bound to 127.0.0.1 on a free port,
with the pickle load/dump switched off. Start it with ``start_stripe_emulator()``; stop it with
``.stop()`` (by PID). ``python -m devkit.emulators.stripe_emulator`` runs it in the
foreground and prints the URL to use as ``STRIPE_API_BASE``.

localstripe ignores Stripe idempotency keys, so against it only the project's own guard prevents
a double charge: a top-up attempt committed before Stripe is called, recovered by PaymentIntent
metadata, and not charged again while its last request may still be in flight (younger than the
client's timeout plus a margin: ``payments.topup.IN_FLIGHT_WINDOW``). A request delayed beyond that
window and delivered after a second charge would make two PaymentIntents here; on real Stripe the
shared ``Idempotency-Key`` deduplicates it for 24 hours. ``tests/support/stripe_proxy.py`` puts a
delaying proxy in front of this emulator to test the window.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

# Any key of this shape is accepted by localstripe; tests and the demo use it.
TEST_API_KEY = "sk_test_satusky_local"


def _serve(port: int) -> None:
    import logging

    from aiohttp import web
    from localstripe import resources, server

    # Fresh state in memory only: never read or write /tmp/localstripe.pickle.
    resources.Store.dump_to_disk = lambda self: None
    resources.Store.try_load_from_disk = lambda self: None
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    web.run_app(server.app, sock=sock, print=None, access_log=None, handle_signals=True)


@dataclass
class StripeEmulator:
    """A running localstripe child process."""

    url: str
    pid: int
    process: subprocess.Popen

    api_key: str = TEST_API_KEY

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        if self.process.stdout:
            self.process.stdout.close()

    def __enter__(self) -> StripeEmulator:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_stripe_emulator(timeout: float = 20.0) -> StripeEmulator:
    """Start localstripe on 127.0.0.1 (free port) with empty state; returns when it answers."""
    process = subprocess.Popen(
        [sys.executable, "-m", "devkit.emulators.stripe_emulator", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = process.stdout.readline() if process.stdout else ""
    if not line.startswith("PORT "):
        process.kill()
        process.wait()
        raise RuntimeError("the Stripe emulator (localstripe) did not start; is localstripe installed in the venv?")
    port = int(line.split()[1])
    emulator = StripeEmulator(f"http://127.0.0.1:{port}", process.pid, process)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return emulator
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                emulator.stop()
                raise RuntimeError(f"the Stripe emulator on port {port} did not answer within {timeout} s") from None
            time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description="localstripe on 127.0.0.1 with fresh state")
    parser.add_argument("--port", type=int, default=0, help="0 = a free port (printed as 'PORT n')")
    _serve(parser.parse_args().port)


if __name__ == "__main__":
    main()


def create_customer_with_card(
    api_base: str, email: str, card_number: str = "4242424242424242", api_key: str = TEST_API_KEY
) -> tuple[str, str]:
    """A customer with an attached card on the emulator (raw test numbers only work there).

    4242424242424242 succeeds; 4000000000000341 attaches, then every charge is declined;
    4000002500003155 needs authentication (which off-session payments cannot do).
    """
    import stripe

    client = stripe.StripeClient(api_key, base_addresses={"api": api_base})
    customer = client.v1.customers.create(params={"email": email})
    method = client.v1.payment_methods.create(
        params={"type": "card", "card": {"number": card_number, "exp_month": 12, "exp_year": 2035, "cvc": "123"}}
    )
    client.v1.payment_methods.attach(method["id"], params={"customer": customer["id"]})
    return customer["id"], method["id"]


def payment_intents(api_base: str, api_key: str = TEST_API_KEY) -> list[dict]:
    """Every PaymentIntent the emulator holds (id, status, amount, metadata)."""
    import stripe

    client = stripe.StripeClient(api_key, base_addresses={"api": api_base})
    intents = [pi.to_dict() for pi in client.v1.payment_intents.list(params={"limit": 100}).auto_paging_iter()]
    return [
        {"id": pi["id"], "status": pi["status"], "amount": pi["amount"], "metadata": dict(pi.get("metadata") or {})}
        for pi in sorted(intents, key=lambda pi: (pi.get("created") or 0, pi["id"]))
    ]
