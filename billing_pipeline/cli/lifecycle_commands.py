"""`billing cleanup-preview ACCOUNT`: exactly what the cleanup would delete right now."""

from __future__ import annotations

from billing_pipeline.cli.output import emit


def register(subparsers, json_parent) -> None:
    p = subparsers.add_parser(
        "cleanup-preview",
        parents=[json_parent],
        help="list the Kubernetes objects the cleanup would delete now (reads only)",
    )
    p.add_argument("account")
    p.add_argument("--now", help="the clock (ISO, default now): decides whether retained volumes are due")
    p.set_defaults(handler=_preview)


def _preview(args) -> int:
    from billing_pipeline.cli.inputs import parse_time
    from billing_pipeline.core.clock import system_now
    from billing_pipeline.db import connect
    from billing_pipeline.lifecycle.preview import cleanup_preview
    from billing_pipeline.lifecycle.store import fmt_size, fmt_time
    from billing_pipeline.resources.kubernetes import KubernetesResource

    now = parse_time(args.now) if args.now else system_now()
    cluster = KubernetesResource.from_env().cluster()
    with connect() as conn:
        data = cleanup_preview(conn, cluster, args.account, now)

    def render(d) -> str:
        lines = [
            f"Cleanup preview for {d['account_id']} at {fmt_time(d['now'])} "
            f"(read from the cluster; nothing is changed):"
        ]
        if d["delete"]:
            lines.append(f"Would delete {len(d['delete'])} object(s):")
            for o in d["delete"]:
                size = ""
                if o["kind"] == "PersistentVolumeClaim":
                    size = (
                        f" ({fmt_size(o['size_bytes'])}, with its data, once its VolumeSnapshot is ready)"
                        if o.get("snapshot_first")
                        else f" ({fmt_size(o['size_bytes'])}, with its data)"
                    )
                how = "label" if o["found_by"] == "label" else "legacy, by name"
                lines.append(
                    f"  {o['kind']:<22} {o['namespace']}/{o['name']}{size}  [{how}; deployment {o['deployment_id']}]"
                )
        else:
            lines.append("Would delete nothing.")
        for o in d["keep"]:
            lines.append(
                f"Would keep PVC {o['namespace']}/{o['name']} ({fmt_size(o['size_bytes'])}) under the retain "
                f"policy until {fmt_time(o['kept_until'])}, then delete it with its data."
            )
        for r in d["refused"]:
            lines.append(f"Refused: deployment {r['deployment_id']}: {r['why']}.")
        return "\n".join(lines)

    emit(args, data, render)
    return 0
