"""`billing status ACCOUNT`: balance, lifecycle state, deadline and what happens at expiry."""

from __future__ import annotations

from billing_pipeline.cli.output import credits, emit


def register(subparsers, json_parent) -> None:
    p = subparsers.add_parser(
        "status", parents=[json_parent], help="balance, lifecycle state, deadline and what happens at expiry"
    )
    p.add_argument("account")
    p.add_argument("--now", help="the clock to describe the account at (ISO, default now)")
    p.set_defaults(handler=_status)


def render_status(d: dict) -> str:
    from billing_pipeline.lifecycle.store import fmt_time

    lines = [f"Account {d['account_id']} ({d['name']}): balance {credits(d['balance'])} credits."]
    state = f"State: {d['state']} — {d['meaning']}"
    if d["entered_at"]:
        state += f" (since {fmt_time(d['entered_at'])})"
    elif not d["evaluated"]:
        state += " (from the balance; the lifecycle has not evaluated this account yet)"
    lines.append(state + ".")
    if d.get("cause"):
        lines.append(f"Why: {d['cause']['text']}")
    if d["state"] == "grace_period":
        lines.append(
            f"Deadline: {fmt_time(d['grace_deadline'])}. Add credits before then to restore routing "
            "exactly as it was"
            + (" and the saved replica counts" if d["scale_to_zero_after_hours"] is not None else "")
            + "; otherwise:"
        )
    elif d["state"] == "expired":
        lines.append(f"The grace period ended on {fmt_time(d['grace_deadline'])}.")
    else:
        lines.append(
            f"Deadline: none. If the balance reaches zero, routing is disabled and a "
            f"{d['grace_period_hours']}-hour grace period starts; at its end:"
        )
    policy = d["volume_policy_text"]
    for item in d["deployments"]:
        lines.append(f"  - {item['text']}")
    for item in d["volumes"]:
        lines.append(f"  - {item['text']}")
    if not d["deployments"] and not d["volumes"]:
        lines.append("  - (no deployments)")
    staged = (
        "off" if d["scale_to_zero_after_hours"] is None else f"after {d['scale_to_zero_after_hours']} hours of grace"
    )
    lines.append(
        f"Volume policy: {policy}. Early idle deletion: {'on' if d['early_idle_deletion'] else 'off'}. "
        f"Scale to zero: {staged}."
    )
    return "\n".join(lines)


def _status(args) -> int:
    from billing_pipeline.cli.inputs import parse_time
    from billing_pipeline.core.clock import system_now
    from billing_pipeline.db import connect
    from billing_pipeline.lifecycle.report import lifecycle_status
    from billing_pipeline.resources.cluster import snapshot_class_from_env

    now = parse_time(args.now) if args.now else system_now()
    with connect() as conn:
        data = lifecycle_status(conn, args.account, now, snapshot_class=snapshot_class_from_env())
    emit(args, data, render_status)
    return 0
