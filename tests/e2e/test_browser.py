"""The Dagster UI, in a real browser: the asset graph tells the story from the sources to the
ledger and the lifecycle, the six jobs exist, sensors and schedules show their state.

`dagster-webserver` serves workspace.yaml on a throw-away Dagster database; Playwright drives
Debian's chromium (`scripts/setup` installs it; `playwright install` cannot download here).
Every step waits on the page's state (an element, a menu item, the drawn labels), never on a fixed
delay, and clicks elements by their role or text, never a pixel.

Screenshots go to pytest's temporary folder; with ``--update-screenshots`` (an option of
tests/conftest.py) they replace docs/images/ui-*.png, which the README shows:
``scripts/test tests/e2e/test_browser.py -n 0 --update-screenshots``.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timezone
from pathlib import Path

import pytest

from billing_pipeline.db.dagster_instance import prepare_dagster_home
from devkit.synthetic import free_port
from tests.support.asset_groups import MONEY_PATH

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "docs" / "images"
CHROMIUM = os.environ.get("BILLING_CHROMIUM", "/usr/bin/chromium")

# The chain the asset graph must show, from the sources to the ledger and the lifecycle, in order.
# Extend it as assets are added (Prometheus, Stripe, Kubernetes, invoices ...). Every key must be
# drawn in the lineage graph, and each must be connected to the next one.
ASSET_CHAIN = [
    "prometheus/cluster_metrics",
    "ingestion/metric_container_hours",
    "analytics_staging/stg_ingestion__metric_container_hours",
    "analytics_intermediate/int_workload_usage_metered",
    "analytics_intermediate/int_workload_usage_reconciled",
    "analytics_intermediate/int_workload_usage_priced",
    "analytics/fct_priced_usage",
    "analytics/fct_usage_charges",
    "ledger/credit_transactions",
    "payments/auto_topups",
    "lifecycle/account_lifecycle",
    "alerts/notification_deliveries",
]
# Each key must be upstream of the next (the settlement is downstream of the marts).
CHAIN_IS_DIRECTED = True
# With every group open, the graph is drawn whole and labelled only on a screen this large (the UI
# draws no labels when it shrinks the graph to fit, and only the nodes in view): no panning.
WHOLE_GRAPH_VIEWPORT = {"width": 2400, "height": 4000}
VIEWPORT = {"width": 1600, "height": 1000}
# The graph's groups, as a newcomer first sees them: the money path.
GROUPS = MONEY_PATH
# The group boxes as drawn: {name: [left, right]} (the name is the box's first line of text).
GROUP_BOXES_JS = """() => Object.fromEntries([...document.querySelectorAll("[class*='CollapsedGroupNode_collapsedGroupNodeBox']")]
    .map(e => { const r = e.getBoundingClientRect(); return [e.innerText.trim().split("\\n")[0].trim(), [r.left, r.right]]; }))"""

# The six jobs of docs/rules/README.md and the assets each one materialises.
JOBS = {
    "credit_usage_job": ["ledger/credit_transactions"],
    "balance_alert_job": ["alerts/balance_alerts", "alerts/notification_deliveries"],
    "auto_topup_job": ["payments/auto_topups"],
    "grace_period_job": ["alerts/notification_deliveries", "lifecycle/account_lifecycle"],
    "monthly_invoice_job": [
        "analytics/fct_invoice_lines",
        "analytics/fct_invoices",
        "analytics/fct_sla_availability",
        "analytics/fct_unbilled_usage",
        "analytics_staging/stg_invoicing__invoice_lines",
        "analytics_staging/stg_invoicing__invoices",
        "analytics_staging/stg_invoicing__sla_measurements",
        "invoicing/invoice_lines",
        "invoicing/invoices",
        "invoicing/sla_credits",
    ],
    "sla_credit_job": ["invoicing/sla_credits"],
}

REPOSITORY_QUERY = """{ repositoriesOrError { ... on RepositoryConnection { nodes {
    jobs { name }
    sensors { name sensorState { status } }
    schedules { name scheduleState { status } }
    assetNodes { assetKey { path } groupName dependencyKeys { path } } } } } }"""

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing: run scripts/setup"),
]


def _graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", json.dumps({"query": query}).encode(), {"Content-Type": "application/json"}
    )
    return json.load(urllib.request.urlopen(request, timeout=20))["data"]


@pytest.fixture(scope="module")
def webserver(databases, tmp_path_factory):
    """dagster-webserver on a free port, its instance on a throw-away database; stopped by PID."""
    db_url = databases.new()
    tmp = tmp_path_factory.mktemp("webserver")
    home = prepare_dagster_home(db_url, tmp / "dagster_home")
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "BILLING_DATABASE_URL": db_url}
    log_path = tmp / "webserver.log"
    log = open(log_path, "w")
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster-webserver"),
            "-w",
            "workspace.yaml",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        repository = None
        deadline = time.monotonic() + 180
        while repository is None and time.monotonic() < deadline:
            assert server.poll() is None, log_path.read_text()
            try:
                nodes = _graphql(port, REPOSITORY_QUERY)["repositoriesOrError"]["nodes"]
                repository = nodes[0] if nodes else None
            except (OSError, KeyError, TypeError, ValueError):
                time.sleep(0.5)
        assert repository is not None, "dagster-webserver did not serve the code location in time"
        yield f"http://127.0.0.1:{port}", repository, db_url.rsplit("/", 1)[-1]
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the whole group: webserver and code server
        try:
            server.wait(timeout=8)  # nothing to save: a throw-away instance
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def playwright():
    """One Playwright for the module: its sync API cannot be started twice in one thread, and both
    browsers below (the plain webserver's and scripts/ui's) are open at once."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def page(webserver, playwright):
    # Generous: the whole graph (about 60 assets) renders slowly in headless chromium on two
    # busy cores; a missing element still fails, only later.
    yield from _browser_page(playwright, timeout_ms=90_000)


def _browser_page(playwright, *, timeout_ms: int):
    """A page of a headless chromium of its own, closed when the fixture ends."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
    context = browser.new_context(viewport=VIEWPORT)
    # The community sign-up dialog of a fresh instance would cover the screenshots.
    context.add_init_script("window.localStorage.setItem('communityNux', '\"1\"')")
    context.set_default_timeout(timeout_ms)
    yield context.new_page()
    browser.close()


@pytest.fixture(scope="module")
def screenshots(request, tmp_path_factory) -> Path:
    """Where the screenshots go: docs/images/ only when asked (``--update-screenshots``), so a
    test run never rewrites tracked files."""
    if request.config.getoption("--update-screenshots"):
        IMAGES.mkdir(parents=True, exist_ok=True)
        return IMAGES
    return tmp_path_factory.mktemp("screenshots")


def _shot(page, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"ui-{name}.png"))


# The drawn node labels (the graph shortens long names with an ellipsis, as _label_matches reads).
LABELS_JS = """() => [...document.querySelectorAll("[class*='AssetNode_assetName']")].map(e => e.innerText.trim())"""
CHAIN_DRAWN_JS = """names => {
    const labels = [...document.querySelectorAll("[class*='AssetNode_assetName']")].map(e => e.innerText.trim());
    const matches = (label, name) => {
        const cut = label.indexOf("\u2026");
        if (cut < 0) return label === name;
        const head = label.slice(0, cut), tail = label.slice(cut + 1);
        return name.startsWith(head) && name.endsWith(tail) && head.length + tail.length < name.length;
    };
    return names.every(name => labels.some(label => matches(label, name)));
}"""


def _label_matches(label: str, name: str) -> bool:
    """The graph shortens long names with an ellipsis ("cred…_transactions")."""
    label = label.strip()
    if "…" not in label:
        return label == name
    head, _, tail = label.partition("…")
    return name.startswith(head) and name.endswith(tail) and len(head) + len(tail) < len(name)


def _connected(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = {start}, [start]
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        for nxt in graph.get(node, ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return False


def _asset_graph_shows_the_chain(webserver, page, screenshots):
    base, repository, database = webserver
    keys = {"/".join(a["assetKey"]["path"]) for a in repository["assetNodes"]}
    assert set(ASSET_CHAIN) <= keys, f"missing from the code location: {sorted(set(ASSET_CHAIN) - keys)}"
    downstream: dict[str, set[str]] = {}
    both: dict[str, set[str]] = {}
    for a in repository["assetNodes"]:
        key = "/".join(a["assetKey"]["path"])
        for dep in a["dependencyKeys"]:
            up = "/".join(dep["path"])
            downstream.setdefault(up, set()).add(key)
            both.setdefault(up, set()).add(key)
            both.setdefault(key, set()).add(up)
    graph = downstream if CHAIN_IS_DIRECTED else both
    for up, down in itertools.pairwise(ASSET_CHAIN):
        assert _connected(graph, up, down), f"the asset graph does not connect {up} to {down}"

    # The groups, as a newcomer first sees them: the story in a few boxes.
    page.goto(f"{base}/asset-groups")
    group_nodes = page.locator("[class*='CollapsedGroupNode_collapsedGroupNodeBox']")
    for group in GROUPS:
        group_nodes.filter(has_text=group).first.wait_for()  # drawn in the graph, not only listed
    page.wait_for_load_state("networkidle")
    _shot(page, screenshots, "lineage-groups")
    # Drawn left to right: every group edge (an asset of one group reading one of another) points
    # right, so the path reads sources -> ... -> invoicing without a turn back.
    boxes = page.evaluate(GROUP_BOXES_JS)
    assert set(GROUPS) <= set(boxes), f"group boxes drawn: {sorted(boxes)}"
    group_of = {"/".join(a["assetKey"]["path"]): a["groupName"] for a in repository["assetNodes"]}
    edges = {
        (group_of["/".join(dep["path"])], a["groupName"])
        for a in repository["assetNodes"]
        for dep in a["dependencyKeys"]
        if group_of["/".join(dep["path"])] != a["groupName"]
    }
    backwards = sorted((up, down) for up, down in edges if boxes[up][1] >= boxes[down][0])
    assert backwards == [], f"group edges drawn right to left or overlapping: {backwards}; boxes: {boxes}"

    # Every group expanded (the graph's settings menu): each asset of the chain is a labelled node.
    page.set_viewport_size(WHOLE_GRAPH_VIEWPORT)
    page.get_by_role("button", name="settings", exact=True).last.click()
    page.get_by_role("menuitem", name="Expand all groups").click()
    page.keyboard.press("Escape")  # close the menu before the picture
    page.get_by_role("menuitem", name="Collapse all groups").wait_for(state="detached")
    names = [key.rsplit("/", 1)[-1] for key in ASSET_CHAIN]
    try:
        page.wait_for_function(CHAIN_DRAWN_JS, arg=names, timeout=60_000)
    except Exception:
        labels = page.evaluate(LABELS_JS)
        missing = [n for n in names if not any(_label_matches(label, n) for label in labels)]
        raise AssertionError(f"not drawn in the expanded graph: {missing}; nodes: {sorted(labels)}") from None
    page.locator("[data-svg-viewport]").screenshot(path=str(screenshots / "ui-lineage-assets.png"))
    page.set_viewport_size(VIEWPORT)

    # One mart's page: description, owner, and the database it is really stored in.
    page.goto(f"{base}/assets/analytics/fct_priced_usage")
    page.get_by_text(f"{database}.analytics.fct_priced_usage").first.wait_for()
    text = " ".join(page.inner_text("body").split())
    assert "Priced usage, one row per account, hour" in text
    assert re.search(r"Owners billing\b", text), "the owner (team:billing) is not shown"
    _shot(page, screenshots, "asset-fct_priced_usage")


def _jobs_are_listed(webserver, page, screenshots):
    base, repository, _ = webserver
    present = {j["name"] for j in repository["jobs"]}
    page.goto(f"{base}/jobs")
    page.get_by_text("credit_usage_job").first.wait_for()
    text = page.inner_text("body")
    for job in JOBS:
        assert job in present, f"job {job} is missing from the code location"
        assert re.search(rf"\b{job}\b", text), f"job {job} is not listed at /jobs"
    _shot(page, screenshots, "jobs")


def _sensors_and_schedules_show_their_state(webserver, page, screenshots):
    base, repository, _ = webserver
    expected = {s["name"]: s["sensorState"]["status"] == "RUNNING" for s in repository["sensors"]}
    expected |= {s["name"]: s["scheduleState"]["status"] == "RUNNING" for s in repository["schedules"]}
    assert expected, "no sensors or schedules in the code location"
    assert any(expected.values()) and not all(expected.values())  # some ship on, some off (README)
    page.goto(f"{base}/automation")
    page.get_by_text(next(iter(expected))).first.wait_for()
    page.wait_for_load_state("networkidle")
    shown = page.evaluate("""() => {
        const rows = {};
        for (const a of document.querySelectorAll('a[href*="/sensors/"], a[href*="/schedules/"]')) {
            const name = decodeURIComponent(a.getAttribute('href').split('/').pop());
            let row = a.parentElement;
            while (row && !row.querySelector('[class*="ListItem_right"] input[type=checkbox]')) row = row.parentElement;
            if (row) rows[name] = row.querySelector('[class*="ListItem_right"] input[type=checkbox]').checked;
        }
        return rows;
    }""")
    assert shown == expected, f"the switches at /automation disagree with the instance: {shown} vs {expected}"
    _shot(page, screenshots, "automation")


def test_the_ui_tells_the_whole_story(webserver, page, screenshots):
    """One webserver, one browser: lineage, jobs, automation (screenshots for the README)."""
    _asset_graph_shows_the_chain(webserver, page, screenshots)
    _jobs_are_listed(webserver, page, screenshots)
    _sensors_and_schedules_show_their_state(webserver, page, screenshots)


@pytest.mark.parametrize("job", list(JOBS))
def test_the_six_jobs_are_defined(job):
    """The jobs of docs/rules/README.md, each materialising exactly its assets."""
    from billing_pipeline.definitions import defs

    assets = defs.resolve_job_def(job).asset_layer.executable_asset_keys
    assert sorted(key.to_user_string() for key in assets) == JOBS[job]


# What the asset pages show for the dbt models: owners, descriptions, the real database, row counts.

ROW_COUNT_SCRIPT = """
import json, sys
from datetime import datetime, timezone
import dagster as dg
from billing_pipeline.resources import PostgresResource
from billing_pipeline.transform.assets import dbt_usage_models
from billing_pipeline.transform.resources import dbt_resource

result = dg.materialize([dbt_usage_models], partition_key=sys.argv[1], instance=dg.DagsterInstance.ephemeral(),
                        resources={"dbt": dbt_resource(), "postgres": PostgresResource(database_url=sys.argv[2])})
print(json.dumps({"success": result.success, "row_counts": {
    "/".join(e.asset_key.path): e.materialization.metadata["dagster/row_count"].value
    for e in result.get_asset_materialization_events() if "dagster/row_count" in e.materialization.metadata}}))
"""


def test_dbt_assets_are_owned_described_and_name_their_database():
    from billing_pipeline.core.ownership import BILLING_OWNER
    from billing_pipeline.transform.project import ensure_manifest, manifest_for_database
    from billing_pipeline.transform.translator import BillingDbtTranslator

    manifest = manifest_for_database(ensure_manifest(), "billing_elsewhere")
    translator = BillingDbtTranslator()
    models = [uid for uid, node in manifest["nodes"].items() if node["resource_type"] == "model"]
    assert len(models) > 20
    for uid in models:
        spec = translator.get_asset_spec(manifest, uid, None)
        assert spec.owners == [BILLING_OWNER], uid
        assert spec.description and len(spec.description) > 20, uid
        assert spec.metadata["dagster/table_name"].startswith("billing_elsewhere."), uid
        assert manifest["nodes"][uid]["relation_name"].startswith('"billing_elsewhere".'), uid


@pytest.mark.slow
def test_a_dbt_build_records_row_counts(db_url, tmp_path):
    """The dbt asset, built for one hour in the process the code server would be: each table
    model's materialisation carries its row count, read from the database it was built in."""
    from tests.support import dbt as d
    from tests.support.platform import create_accounts

    hour = "2026-11-24-10:00"
    create_accounts(db_url, "acme")
    d.add_standard_prices(db_url)
    d.add_deployment(db_url, "dep-acme", "acme")
    start = datetime(2026, 11, 24, 10, tzinfo=UTC)
    d.add_container_hour(
        db_url,
        start,
        "acme-1",
        deployment_id="dep-acme",
        account_id="acme",
        node="node-s",
        cpu_usage="1",
        cpu_request="1",
        mem_usage="2",
        mem_request="2",
    )
    d.mark_hours(db_url, start, 1)
    env = {**os.environ, "BILLING_DATABASE_URL": db_url}
    env.pop("DAGSTER_HOME", None)
    proc = subprocess.run(
        [sys.executable, "-c", ROW_COUNT_SCRIPT, hour, db_url],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["success"]
    assert report["row_counts"]["analytics/fct_priced_usage"] == 2  # cpu and memory of one container-hour
    assert report["row_counts"]["analytics/fct_usage_charges"] == 1  # one account, hour and usage kind


# scripts/ui after the demo: the first `dagster dev` launches nothing that fails, and the hourly job
# launched from the UI succeeds, with the services the demo used running again.

DEMO_HOUR = "2026-11-24-15:00"  # the demo's last hour: re-running it posts nothing new
SENSORS_ON = {"corrections_sensor", "balance_change_sensor", "failed_checks_sensor"}


@pytest.fixture(scope="module")
def demo_ui(databases, tmp_path_factory):
    """The demo on a throw-away database and state folder, then `scripts/ui` on its instance;
    stopped by PID (scripts/ui stops dagster dev and its services itself)."""
    db_url = databases.new()
    state = tmp_path_factory.mktemp("demo-state")
    env = {**os.environ, "BILLING_DATABASE_URL": db_url, "BILLING_STATE_DIR": str(state)}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    for name in ("BILLING_FIRST_HOUR", "DAGSTER_HOME", "PROMETHEUS_URL", "KUBECONFIG", "BILLING_LEDGER_KEY"):
        env.pop(name, None)  # as a newcomer's shell: the demo and scripts/ui set what they need
    demo = subprocess.run(
        [sys.executable, "-m", "devkit.demo"], cwd=REPO, env=env, capture_output=True, text=True, timeout=1800
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    port = free_port()
    log_path = state / "ui.log"
    log = open(log_path, "w")
    ui = subprocess.Popen(
        [str(REPO / "scripts" / "ui"), "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        repository, deadline = None, time.monotonic() + 300
        while repository is None and time.monotonic() < deadline:
            assert ui.poll() is None, log_path.read_text()
            try:
                nodes = _graphql(port, REPOSITORY_QUERY)["repositoriesOrError"]["nodes"]
                repository = nodes[0] if nodes else None
            except (OSError, KeyError, TypeError, ValueError):
                time.sleep(1)
        assert repository is not None, "scripts/ui did not serve the code location in time\n" + log_path.read_text()
        yield f"http://127.0.0.1:{port}", state / "dagster_home", log_path
    finally:
        if ui.poll() is None:
            os.killpg(ui.pid, signal.SIGTERM)  # scripts/ui: stops dagster dev, then the services it started
        try:
            ui.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, signal.SIGKILL)
            ui.wait(timeout=10)
        log.close()


def _runs(home: Path) -> list:
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        return list(instance.get_runs())


def _wait_for(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(2)
    raise AssertionError(f"timed out waiting for {what}")


def _sensors_ticked(home: Path) -> bool:
    import dagster as dg
    from dagster._core.definitions.run_request import InstigatorType

    with dg.DagsterInstance.from_config(str(home)) as instance:
        states = list(instance.all_instigator_state(instigator_type=InstigatorType.SENSOR))
        # Sensors on by default are DECLARED_IN_CODE until someone switches them in the UI.
        running = [s for s in states if s.status.value in ("RUNNING", "DECLARED_IN_CODE")]
        ticked = [s for s in running if instance.get_ticks(s.instigator_origin_id, s.selector_id, limit=1)]
        return {s.instigator_name for s in ticked} >= SENSORS_ON and len(ticked) == len(running)


@pytest.fixture(scope="module")
def ui_page(demo_ui, playwright):
    """A browser of its own for scripts/ui (the module's ``page`` belongs to the plain webserver)."""
    yield from _browser_page(playwright, timeout_ms=120_000)


def test_scripts_ui_after_the_demo_launches_nothing_that_fails_and_the_hourly_job_succeeds(
    demo_ui, ui_page, screenshots
):
    page = ui_page
    base, home, log_path = demo_ui
    demo_runs = {r.run_id for r in _runs(home)}
    # The daemon's first evaluations: every running sensor has ticked once.
    _wait_for(lambda: _sensors_ticked(home), 300, "every running sensor's first tick")

    # The hourly job, from the UI: its page, "Materialize all", one partition, launch.
    page.goto(f"{base}/locations/billing_pipeline/jobs/hourly_billing_job")
    page.get_by_role("button", name="Materialize all").click()
    dialog = page.get_by_role("dialog")
    # The partitions start at the demo's first hour (BILLING_FIRST_HOUR), not months before it.
    dialog.get_by_text("2026-11-24-10:00").first.wait_for()
    assert "Are you sure" not in dialog.inner_text()  # no hourly asset reads a monthly one
    partitions = dialog.get_by_role("textbox").first
    partitions.fill(DEMO_HOUR)
    partitions.press("Enter")
    dialog.get_by_text("1 partition", exact=True).wait_for()
    _shot(page, screenshots, "launch-hourly")
    dialog.get_by_role("button", name=re.compile(r"^Launch")).click()
    launched = _wait_for(
        lambda: [r for r in _runs(home) if r.run_id not in demo_runs and r.job_name == "hourly_billing_job"],
        120,
        "the run launched from the UI",
    )
    (run,) = launched
    assert run.tags.get("dagster/partition") == DEMO_HOUR
    done = _wait_for(
        lambda: [r for r in _runs(home) if r.run_id == run.run_id and r.is_finished],
        900,
        "the hourly run to finish",
    )
    page.goto(f"{base}/runs/{run.run_id}")
    page.get_by_text("Success").first.wait_for()
    _shot(page, screenshots, "hourly-run")
    assert done[0].status.value == "SUCCESS", log_path.read_text()[-4000:]
    assert "billing/checks" not in done[0].tags  # no ERROR check failed either

    # Nothing the daemon launched since the demo failed (sensors, schedules, automation).
    others = [r for r in _runs(home) if r.run_id not in demo_runs and r.run_id != run.run_id]
    assert [(r.job_name, r.status.value, r.tags.get("billing/checks")) for r in others if r.is_finished] == [
        (r.job_name, "SUCCESS", None) for r in others if r.is_finished
    ]
