"""Runs the CLI launches carry their origin: the command line and who ran it."""

from billing_pipeline.core.runs import origin_tags


def test_a_cli_run_names_its_command_and_user():
    argv = ["/srv/billing/.venv/bin/billing", "run", "--start", "2026-11-24T10:00Z", "--end", "2026-11-24T12:00Z"]
    assert origin_tags(argv, user="ana") == {
        "billing/origin": "cli",
        "user": "ana (billing CLI)",
        "billing/command": "billing run --start 2026-11-24T10:00Z --end 2026-11-24T12:00Z",
    }


def test_the_command_is_quoted_and_kept_short():
    tags = origin_tags(["billing", "adjust", "acme", "-5", "--reason", "it's a refund"], user="ana")
    assert tags["billing/command"] == "billing adjust acme -5 --reason 'it'\"'\"'s a refund'"
    long = origin_tags(["billing", "run", "x" * 500], user="ana")["billing/command"]
    assert len(long) == 200 and long.endswith("…") and long.startswith("billing run xxx")


def test_a_run_the_demo_launches_names_the_demo():
    tags = origin_tags(["/repo/devkit/demo/__main__.py"], user="ana")
    assert tags == {"billing/origin": "script", "user": "ana (devkit.demo)", "billing/command": "python -m devkit.demo"}
