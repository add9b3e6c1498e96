"""deploy/: the Kubernetes instance configuration, checked with Dagster's own loaders.

deploy/dagster.yaml is loaded by ``dagster_instance_config`` (the function DagsterInstance uses
to read $DAGSTER_HOME/dagster.yaml), its run coordinator is built from it, and its run
launcher's config is validated against K8sRunLauncher's schema. deploy/helm/values.yaml must
carry the same run-queue limits, and the money lane's limit must be the one billing_pipeline/core/runs.py
names. No cluster and no database are needed.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml
from dagster._config import process_config
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster._core.storage.config import pg_config
from dagster._serdes import ConfigurableClassData
from dagster._utils.merger import merge_dicts
from dagster_k8s import K8sRunLauncher

from billing_pipeline.core.runs import LANE_TAG, MONEY_LANE
from billing_pipeline.db.dagster_instance import STORAGES, deploy_instance_config, local_instance_config
from billing_pipeline.db.dagster_storage import BillingDagsterInstance, storage_config_type

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"

# Every variable deploy/dagster.yaml reads (the chart sets them in each pod).
INSTANCE_ENV = {
    "DAGSTER_PG_USERNAME": "dagster",
    "DAGSTER_PG_PASSWORD": "not-a-real-password",
    "DAGSTER_PG_HOST": "billing-postgres.billing.svc.cluster.local",
    "DAGSTER_PG_DB": "satusky_billing_dagster",
    "DAGSTER_PG_PORT": "5432",
    "DAGSTER_HOME": "/opt/dagster/dagster_home",
    "DAGSTER_K8S_JOB_NAMESPACE": "billing",
    "DAGSTER_K8S_SERVICE_ACCOUNT": "dagster",
    "DAGSTER_K8S_INSTANCE_CONFIG_MAP": "dagster-instance",
    "DAGSTER_K8S_PG_PASSWORD_SECRET": "dagster-postgresql-secret",
    "DAGSTER_K8S_PIPELINE_RUN_ENV_CONFIGMAP": "dagster-pipeline-env",
}

EXPECTED_LIMITS = [
    {"key": LANE_TAG, "value": MONEY_LANE, "limit": 1},
    {"key": "billing/domain", "value": "invoicing", "limit": 1},
    {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1},
]


@pytest.fixture
def instance_env(monkeypatch):
    for name, value in INSTANCE_ENV.items():
        monkeypatch.setenv(name, value)


def load_instance_config(folder: Path = DEPLOY) -> dict:
    config, custom_class = dagster_instance_config(str(folder), config_filename="dagster.yaml")
    assert custom_class is BillingDagsterInstance
    return dict(config)


def edited_copy(folder: Path, edit) -> Path:
    """deploy/dagster.yaml with ``edit`` applied to its parsed YAML, written into ``folder``."""
    data = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    edit(data)
    folder.mkdir()
    (folder / "dagster.yaml").write_text(yaml.safe_dump(data))
    return folder


def build_run_coordinator(config: dict) -> QueuedRunCoordinator:
    section = config["run_coordinator"]
    data = ConfigurableClassData(section["module"], section["class"], yaml.safe_dump(section.get("config", {})))
    coordinator = data.rehydrate(QueuedRunCoordinator)
    assert isinstance(coordinator, QueuedRunCoordinator)
    return coordinator


def test_instance_config_loads_through_dagster(instance_env):
    config = load_instance_config()

    assert set(config) >= {*STORAGES, "run_coordinator", "run_launcher", "scheduler", "run_monitoring"}
    # Storage: PostgreSQL, every field resolved from the environment, psycopg2 named explicitly.
    storage = process_config(storage_config_type(), config["event_log_storage"]["config"])
    assert storage.success, storage.errors
    assert process_config(pg_config(), config["event_log_storage"]["config"]).success  # dagster-postgres' own
    assert config["event_log_storage"]["class"] == "PooledPostgresEventLogStorage"
    db = storage.value["postgres_db"]
    assert (db["username"], db["password"], db["hostname"], db["db_name"], db["port"], db["scheme"]) == (
        "dagster",
        "not-a-real-password",
        "billing-postgres.billing.svc.cluster.local",
        "satusky_billing_dagster",
        5432,
        "postgresql+psycopg2",
    )
    assert config["run_monitoring"]["enabled"] is True


def test_the_deploy_file_is_generated_from_the_one_instance_configuration():
    """deploy/dagster.yaml is what deploy_instance_config() writes, and the local instance (the
    demo's, the tests' and the benchmarks') differs from it only where the platform does."""
    assert yaml.safe_load((DEPLOY / "dagster.yaml").read_text()) == deploy_instance_config()
    deploy = deploy_instance_config()
    local = local_instance_config("postgresql://postgres@127.0.0.1:5432/satusky_billing")
    platform_only = {"run_launcher", "run_monitoring"}
    assert set(deploy) - set(local) == platform_only and set(local) <= set(deploy)
    for key in set(local) - set(STORAGES):
        assert local[key] == deploy[key], key
    for key in STORAGES:  # the same classes; only where the storage's database is differs
        assert {k: v for k, v in local[key].items() if k != "config"} == {
            k: v for k, v in deploy[key].items() if k != "config"
        }
    assert local["run_storage"]["config"] == {
        "billing_database_url": "postgresql://postgres@127.0.0.1:5432/satusky_billing"
    }
    # A password is never written: the file names the variable every process already has.
    with_password = local_instance_config("postgresql://u:pw-Secret@db:5432/satusky_billing")
    assert "pw-Secret" not in yaml.safe_dump(with_password)
    assert with_password["event_log_storage"]["config"] == {"billing_database_url": {"env": "BILLING_DATABASE_URL"}}


def test_run_queue_holds_one_money_run_at_a_time(instance_env):
    coordinator = build_run_coordinator(load_instance_config())
    queue = coordinator.get_run_queue_config()

    assert queue.max_concurrent_runs == 4
    assert list(queue.tag_concurrency_limits) == EXPECTED_LIMITS
    money = [limit for limit in queue.tag_concurrency_limits if limit["key"] == LANE_TAG]
    assert money == [{"key": LANE_TAG, "value": MONEY_LANE, "limit": 1}]


def test_run_launcher_is_k8s_and_its_config_validates(instance_env):
    launcher = load_instance_config()["run_launcher"]

    assert (launcher["module"], launcher["class"]) == ("dagster_k8s", "K8sRunLauncher")
    processed = process_config(K8sRunLauncher.config_type(), launcher["config"])
    assert processed.success, processed.errors
    value = processed.value
    assert value["instance_config_map"] == "dagster-instance"
    assert value["job_namespace"] == "billing"
    assert value["load_incluster_config"] is True
    assert value["env_secrets"] == ["billing-secrets"]
    assert value["env_config_maps"] == ["dagster-pipeline-env", "billing-config"]
    assert value["resources"]["limits"]["memory"] == "4Gi"


def test_a_broken_launcher_config_is_refused(instance_env):
    launcher = copy.deepcopy(load_instance_config()["run_launcher"]["config"])
    launcher.pop("instance_config_map")  # the pods would have no dagster.yaml
    assert not process_config(K8sRunLauncher.config_type(), launcher).success

    launcher = merge_dicts(load_instance_config()["run_launcher"]["config"], {"job_namspace": "typo"})
    assert not process_config(K8sRunLauncher.config_type(), launcher).success


def test_a_broken_instance_file_is_refused(tmp_path, instance_env):
    def two_queues(data):  # run_queue beside run_coordinator: Dagster refuses the pair
        data["run_queue"] = {"max_concurrent_runs": 1}

    with pytest.raises(DagsterInvalidConfigError):
        load_instance_config(edited_copy(tmp_path / "a", two_queues))

    def bad_limit(data):  # a limit that is not a number is a schema error when the queue is built
        data["run_coordinator"]["config"]["tag_concurrency_limits"][0]["limit"] = "one"

    broken = load_instance_config(edited_copy(tmp_path / "b", bad_limit))
    with pytest.raises(DagsterInvalidConfigError, match="tag_concurrency_limits"):
        build_run_coordinator(broken)


def test_helm_values_carry_the_same_limits_and_launcher():
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    instance = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())

    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert values["dagsterDaemon"]["enabled"] is True
    assert (coordinator["enabled"], coordinator["type"]) == (True, "QueuedRunCoordinator")
    queued = coordinator["config"]["queuedRunCoordinator"]
    assert queued["tagConcurrencyLimits"] == EXPECTED_LIMITS
    assert queued["tagConcurrencyLimits"] == instance["run_coordinator"]["config"]["tag_concurrency_limits"]
    assert queued["maxConcurrentRuns"] == instance["run_coordinator"]["config"]["max_concurrent_runs"]

    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    k8s = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert [s["name"] for s in k8s["envSecrets"]] == instance["run_launcher"]["config"]["env_secrets"]
    assert k8s["resources"] == instance["run_launcher"]["config"]["resources"]

    # External PostgreSQL; the password only through the pre-created Secret.
    assert values["postgresql"]["enabled"] is False
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"] == INSTANCE_ENV["DAGSTER_K8S_PG_PASSWORD_SECRET"]
    assert values["postgresql"]["postgresqlPassword"] == ""
    assert values["postgresql"]["postgresqlScheme"] == instance["event_log_storage"]["config"]["postgres_db"]["scheme"]

    # The code location: the Dockerfile's image, serving the one Definitions object.
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["codeServerArgs"] == ["-m", "billing_pipeline.definitions", "-a", "defs"]
    assert deployment["port"] == 4000
    assert deployment["podSecurityContext"]["runAsNonRoot"] is True


SECRET_NAME = re.compile(r"KEY|SECRET|PASSWORD|TOKEN|DATABASE_URL", re.I)


def dockerfile_instructions(text: str) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    instructions, current = [], ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            instructions.append(current.strip())
            current = ""
    return instructions


def baked_secrets(text: str) -> list[str]:
    """ENV and ARG instructions that set a variable named like a secret (they stay in the image)."""
    return [
        i
        for i in dockerfile_instructions(text)
        if re.match(r"(ENV|ARG)\b", i)
        and any(SECRET_NAME.search(n) for n in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", i))
    ]


def test_dockerfile_serves_the_code_location_and_bakes_no_secret():
    text = (DEPLOY / "Dockerfile").read_text()
    instructions = dockerfile_instructions(text)

    assert instructions[-1] == (
        'CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", '
        '"-m", "billing_pipeline.definitions", "-a", "defs"]'
    )
    assert "RUN uv sync --frozen --no-dev --extra k8s" in instructions
    assert "USER 10001:10001" in instructions, "the image must not run as root"
    assert not [i for i in instructions if i.startswith("ENTRYPOINT")]  # the chart passes the command as args
    assert baked_secrets(text) == []
    # dbt's parse-time profile is set for that one RUN only and names no real server.
    (parse,) = [i for i in instructions if "/dbt parse " in i]
    assert parse.startswith("RUN DBT_PG_HOST=parse-only.invalid ")
    assert "test -s dbt_project/target/manifest.json" in parse
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    assert ".billing/" in ignored and "dbt_project/target/" in ignored


def test_the_secret_check_catches_a_baked_key():
    text = (DEPLOY / "Dockerfile").read_text()
    assert baked_secrets(text + "\nENV BILLING_LEDGER_KEY=abc123\n") == ["ENV BILLING_LEDGER_KEY=abc123"]
    assert baked_secrets(text + "\nENV A=1 \\\n    STRIPE_API_KEY=sk_live_x\n") == ["ENV A=1 STRIPE_API_KEY=sk_live_x"]
