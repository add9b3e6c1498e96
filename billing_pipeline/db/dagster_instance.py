"""The Dagster instance: one configuration for the local instance and for deploy/dagster.yaml.

``instance_config`` is the one source. The local instance (``prepare_dagster_home``: the demo,
the tests, the benchmarks) and the Kubernetes one (``deploy/dagster.yaml``, generated from
``deploy_instance_config``; tests/unit/test_deploy.py checks the file equals it) share every
setting: the storage classes (billing_pipeline/db/dagster_storage.py: psycopg2, the pooled event
log), the batched event writes, the run queue and its limits. They differ only where the
platform does: where the storage's connection comes from, and Kubernetes' run launcher and run
monitoring. What the benchmarks measure is what runs in production.

``load_instance`` is how every ``billing`` command opens an instance: from a folder, with no
``DAGSTER_HOME`` written to the environment, a Dagster-documented ``postgres_url:
"postgresql://…"`` spelled for psycopg2, and a broken instance file as one line (exit 3).

Run as ``python -m billing_pipeline.db.dagster_instance deploy/dagster.yaml`` to write the
Kubernetes instance file.
"""

from __future__ import annotations

import copy
import os
import re
import sys
from pathlib import Path
from urllib.parse import quote, urlencode

import yaml
from psycopg.conninfo import conninfo_to_dict

from billing_pipeline.core.errors import ConfigurationError
from billing_pipeline.core.runs import LANE_TAG, MONEY_LANE
from billing_pipeline.db.connection import LOCAL_PORT, ensure_database, redact_url, state_dir

STORAGE_MODULE = "billing_pipeline.db.dagster_storage"
# The three storages, each a dagster-postgres class of ours (dagster_storage.py).
STORAGES = {
    "run_storage": "BillingPostgresRunStorage",
    "event_log_storage": "PooledPostgresEventLogStorage",
    "schedule_storage": "BillingPostgresScheduleStorage",
}

# The storage of the Kubernetes instance: every field from the environment the Dagster chart sets
# in each pod (the password from the Secret named by global.postgresqlSecretName).
DEPLOY_STORAGE = {
    "postgres_db": {
        "username": {"env": "DAGSTER_PG_USERNAME"},
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "hostname": {"env": "DAGSTER_PG_HOST"},
        "db_name": {"env": "DAGSTER_PG_DB"},
        "port": {"env": "DAGSTER_PG_PORT"},
        "params": {"sslmode": "require"},
        "scheme": "postgresql+psycopg2",
    }
}

# One Kubernetes Job per run, from the code location's image (dagster_k8s 0.29.x pairs with
# dagster 1.13.x). BILLING_DATABASE_URL, BILLING_LEDGER_KEY, STRIPE_API_KEY, SMTP_PASSWORD and
# BILLING_WEBHOOK_SECRET come from one Secret, billing-secrets, created outside the chart.
K8S_RUN_LAUNCHER = {
    "module": "dagster_k8s",
    "class": "K8sRunLauncher",
    "config": {
        "load_incluster_config": True,
        "job_namespace": {"env": "DAGSTER_K8S_JOB_NAMESPACE"},
        "image_pull_policy": "IfNotPresent",
        "service_account_name": {"env": "DAGSTER_K8S_SERVICE_ACCOUNT"},
        "dagster_home": {"env": "DAGSTER_HOME"},
        "instance_config_map": {"env": "DAGSTER_K8S_INSTANCE_CONFIG_MAP"},
        "postgres_password_secret": {"env": "DAGSTER_K8S_PG_PASSWORD_SECRET"},
        "env_config_maps": [{"env": "DAGSTER_K8S_PIPELINE_RUN_ENV_CONFIGMAP"}, "billing-config"],
        "env_secrets": ["billing-secrets"],
        "labels": {"app.kubernetes.io/part-of": "satusky-billing"},
        "fail_pod_on_run_failure": True,
        "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}},
    },
}

# The daemon marks a run whose pod died (evicted, OOM-killed) as failed instead of leaving it
# STARTED: a STARTED money run would hold the lane for ever.
K8S_RUN_MONITORING = {"enabled": True, "start_timeout_seconds": 300, "poll_interval_seconds": 120}


def instance_config(storage: dict, *, kubernetes: bool = False) -> dict:
    """dagster.yaml as a dict; ``storage`` is each storage's config (where its database is)."""
    config = {
        # Batched event writes (dagster_storage.BillingDagsterInstance).
        "instance_class": {"module": STORAGE_MODULE, "class": "BillingDagsterInstance"},
        **{
            key: {"module": STORAGE_MODULE, "class": cls, "config": copy.deepcopy(storage)}
            for key, cls in STORAGES.items()
        },
        "scheduler": {"module": "dagster.core.scheduler", "class": "DagsterDaemonScheduler"},
        # Every run waits in the daemon's queue (or, without a daemon, `billing` runs it in the
        # money lane's advisory lock: orchestration/launcher.py).
        "run_coordinator": {
            "module": "dagster.core.run_coordinator",
            "class": "QueuedRunCoordinator",
            "config": {
                "max_concurrent_runs": 4,
                "tag_concurrency_limits": [
                    # One run of the money lane at a time (core/runs.py: every job that writes
                    # billing state), so a sensor's run and `billing run` never settle at once.
                    {"key": LANE_TAG, "value": MONEY_LANE, "limit": 1},
                    # Month-end (sla_credit_job, monthly_invoice_job): one at a time.
                    {"key": "billing/domain", "value": "invoicing", "limit": 1},
                    # Never two runs of the same partition (hour or month) at once; still holds
                    # when the money lane is split per shard (docs/scaling.md).
                    {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1},
                ],
                "dequeue_interval_seconds": 5,
            },
        },
        "telemetry": {"enabled": False},
    }
    if kubernetes:
        config["run_launcher"] = K8S_RUN_LAUNCHER
        config["run_monitoring"] = K8S_RUN_MONITORING
    return config


def local_instance_config(billing_url: str) -> dict:
    """The local instance: storage in ``<billing database>_dagster`` (``dagster_database_url``).

    The billing URL is written when it holds no password; with one, the file names
    ``BILLING_DATABASE_URL`` instead, which every process that loads the definitions has."""
    source = {"env": "BILLING_DATABASE_URL"} if conninfo_to_dict(billing_url).get("password") else billing_url
    return instance_config({"billing_database_url": source})


def deploy_instance_config() -> dict:
    """The Kubernetes instance (deploy/dagster.yaml)."""
    return instance_config(DEPLOY_STORAGE, kubernetes=True)


DEPLOY_HEADER = """\
# The Dagster instance on Kubernetes, mounted as $DAGSTER_HOME/dagster.yaml into the web server,
# the daemon and every run pod. GENERATED from billing_pipeline/db/dagster_instance.py
# (deploy_instance_config), the same source as the local instance the tests and benchmarks use:
#   python -m billing_pipeline.db.dagster_instance deploy/dagster.yaml
# Do not edit by hand: tests/unit/test_deploy.py checks this file equals the function.
# Nothing secret is written here: every credential and endpoint is read from the environment.
"""


def dump(config: dict) -> str:
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False, width=100)


def dagster_database_url(billing_url: str) -> str:
    """The Dagster storage database: ``<billing database>_dagster`` on the same server, with the
    same user, password and connection options (sslmode, ...), as a URL SQLAlchemy accepts."""
    p = dict(conninfo_to_dict(billing_url))
    dbname = f"{p.pop('dbname', None) or 'satusky_billing'}_dagster"
    user, password = p.pop("user", None) or "postgres", p.pop("password", None)
    host, port = p.pop("host", None) or "127.0.0.1", p.pop("port", None)
    auth = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
    if host.startswith("/"):  # a Unix socket folder (e.g. pgserver): passed as a query parameter
        netloc, p = f"{auth}@", {"host": host, **({"port": port} if port else {}), **p}
    else:
        netloc = f"{auth}@{host}:{port or LOCAL_PORT}"
    return f"postgresql://{netloc}/{quote(dbname, safe='')}" + (f"?{urlencode(p, safe='/')}" if p else "")


def prepare_dagster_home(billing_url: str, home: Path | None = None) -> Path:
    """Write the local instance's ``dagster.yaml`` into ``home`` and create its storage database.

    Returns the folder: the caller points ``DAGSTER_HOME`` at it for the processes it starts
    (this function sets no environment variable), or opens it with ``load_instance``."""
    ensure_database(dagster_database_url(billing_url))
    home = home or state_dir() / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(
        "# Written by billing_pipeline/db/dagster_instance.py (instance_config): the settings of\n"
        "# deploy/dagster.yaml, with the storage beside the billing database.\n"
        + dump(local_instance_config(billing_url))
    )
    return home


def _psycopg2_overrides(raw: dict) -> dict:
    """Overrides that send a stock dagster-postgres storage through psycopg2 (see the module doc)."""
    from billing_pipeline.db.dagster_storage import PSYCOPG2_SCHEME, psycopg2_url

    def fixed(config: dict) -> dict | None:
        if not isinstance(config, dict):
            return None
        url = config.get("postgres_url")
        if isinstance(url, dict) and "env" in url:
            url = os.environ.get(url["env"])
        if isinstance(url, str) and psycopg2_url(url) != url:
            return {"postgres_url": psycopg2_url(url)}
        db = config.get("postgres_db")
        if isinstance(db, dict) and db.get("scheme", "postgresql") in ("postgresql", "postgres"):
            return {"postgres_db": {"scheme": PSYCOPG2_SCHEME}}
        return None

    overrides: dict = {}
    storage = raw.get("storage")
    if isinstance(storage, dict) and (change := fixed(storage.get("postgres"))):
        overrides["storage"] = {"postgres": change}
    for key in STORAGES:
        section = raw.get(key)
        stock = isinstance(section, dict) and str(section.get("module", "")).startswith("dagster_postgres")
        if stock and (change := fixed(section.get("config"))):
            overrides[key] = {"config": change}
    return overrides


def _masked(text: str) -> str:
    """``text`` with any URL's password masked (an instance error may quote its storage URL)."""
    return re.sub(r"[a-z][a-z0-9+.-]*://\S+", lambda m: redact_url(m[0]), text)


def _one_line(message: str) -> str:
    """Dagster's multi-line error text (a stack trace after "Stack Trace:") as one line."""
    return " ".join(message.split("Stack Trace:")[0].split())


def load_instance(home: Path | str):
    """The Dagster instance whose dagster.yaml is in ``home``; a ConfigurationError in one line
    when it cannot be opened (a variable it names is unset, a bad field, an unreachable server)."""
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    home = Path(home)
    path = home / "dagster.yaml"
    try:
        raw = yaml.safe_load(path.read_text()) if path.exists() else {}
        ref = InstanceRef.from_dir(str(home), overrides=_psycopg2_overrides(raw or {}))
        return dg.DagsterInstance.from_ref(ref)
    except Exception as exc:  # Dagster's config errors carry a stack trace: say it in one line
        detail = getattr(exc, "errors", None)
        reason = "; ".join(_one_line(e.message) for e in detail) if detail else _one_line(str(exc))
        raise ConfigurationError(
            f"the Dagster instance in {path} cannot be opened: {_masked(reason)[:400]}. "
            "Correct the file or set the variables it names (storage: postgres_url postgresql+psycopg2://..., "
            "or billing_database_url: {env: BILLING_DATABASE_URL})."
        ) from None


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(DEPLOY_HEADER + dump(deploy_instance_config()))
