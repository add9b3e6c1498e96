"""A real process that posts a fixed plan of ledger work, for the SIGKILL tests.

``python -m tests.support.ledger_worker DB_URL SEED`` is a fork server: it imports everything
once, then for each ``go`` line on stdin forks a worker process that posts, in order, the plan
``plan(SEED)`` (batches through ``post_entries``, single top-ups through the `billing topup`
command), printing ``ready PID`` once connected; when the worker ends (or is killed) the server
prints ``exit STATUS``. Killed at any moment and started again, a worker must end with every
entry posted exactly once and every batch all or nothing.
"""

from __future__ import annotations

import os
import random
import sys
from decimal import Decimal

ACCOUNTS = ("acme", "globex")


def plan(seed: int) -> list[tuple[str, list[tuple[str, str, str, str]]]]:
    """``[(kind, [(account, type, amount, key), ...]), ...]``; kind is ``batch`` or ``cli_topup``."""
    rng = random.Random(seed)
    work = []
    for n in range(60):
        if n % 3 == 2:
            work.append(
                (
                    "cli_topup",
                    [(rng.choice(ACCOUNTS), "topup", f"{rng.randint(1, 500)}.{rng.randint(0, 99):02d}", f"pay-{n}")],
                )
            )
        else:
            size = rng.choice((1, 5, 40, 400))
            work.append(
                (
                    "batch",
                    [
                        (
                            rng.choice(ACCOUNTS),
                            rng.choice(("usage_deduction", "sla_credit")),
                            f"{rng.randint(1, 10**6)}e-4",
                            f"b{n}:{i}",
                        )
                        for i in range(size)
                    ],
                )
            )
    return work


def signed(type_: str, amount: str) -> Decimal:
    value = Decimal(amount)
    return -value if type_ == "usage_deduction" else value


def work(url: str, seed: int) -> None:
    import psycopg

    from billing_pipeline.cli.main import main as billing
    from billing_pipeline.ledger import Entry, post_entries

    with psycopg.connect(url) as conn:
        print(f"ready {os.getpid()}", flush=True)
        sys.stdout = open(os.devnull, "w")  # the command's own output is not for the test
        for kind, rows in plan(seed):
            if kind == "batch":
                post_entries(
                    conn, [Entry(a, t, signed(t, amount), key, reference={"n": key}) for a, t, amount, key in rows]
                )
            else:
                ((account, _, amount, key),) = rows
                assert billing(["topup", account, amount, "--reference", key]) == 0


def serve(url: str, seed: int) -> None:
    os.environ["BILLING_DATABASE_URL"] = url
    import billing_pipeline.ledger
    from billing_pipeline.cli.main import build_parser

    build_parser()  # imports every command module once, before forking

    for line in sys.stdin:
        if line.strip() != "go":
            continue
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                work(url, seed)
            except BaseException as exc:  # reported through the exit status
                print(f"worker failed: {exc!r}", file=sys.stderr, flush=True)
                code = 1
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        print(f"exit {status}", flush=True)


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
