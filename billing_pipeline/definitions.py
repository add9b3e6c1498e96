"""The one Dagster ``Definitions`` of the billing pipeline.

Each domain contributes its assets and jobs through its own ``defs``; the hourly cycle's jobs,
sensors and schedule come from ``orchestration.graph``; resources are bound once, here, from the
environment (``dg.EnvVar``: read when a run uses the resource, nothing written to it).
Batched event writes are an instance setting (db/dagster_storage.py, ``BillingDagsterInstance``).
"""

import dagster as dg

from billing_pipeline.alerts.defs import defs as alerts_defs
from billing_pipeline.ingestion.defs import defs as ingestion_defs
from billing_pipeline.invoicing.defs import defs as invoicing_defs
from billing_pipeline.ledger.defs import defs as ledger_defs
from billing_pipeline.lifecycle.defs import defs as lifecycle_defs
from billing_pipeline.orchestration.graph import defs as cycle_defs
from billing_pipeline.orchestration.run_checks import defs as run_checks_defs
from billing_pipeline.payments.defs import defs as payments_defs
from billing_pipeline.resources import PostgresResource
from billing_pipeline.resources.kubernetes import KubernetesResource
from billing_pipeline.resources.notify import notify_resource
from billing_pipeline.resources.prometheus import PrometheusResource
from billing_pipeline.resources.stripe import stripe_resource
from billing_pipeline.transform.defs import defs as transform_defs
from billing_pipeline.transform.resources import dbt_resource

resources = {
    "postgres": PostgresResource(database_url=dg.EnvVar("BILLING_DATABASE_URL")),
    "prometheus": PrometheusResource(url=dg.EnvVar("PROMETHEUS_URL")),
    "dbt": dbt_resource(),
    # KUBECONFIG (else in-cluster), BILLING_PROTECTED_NAMESPACES and BILLING_LIFECYCLE_DRY_RUN are
    # read when the cluster is used: an unset KUBECONFIG is valid (in-cluster service account).
    "kubernetes": KubernetesResource(),
    # STRIPE_API_KEY (+ STRIPE_API_BASE for an emulator); SMTP_HOST/PORT/FROM and
    # BILLING_WEBHOOK_SECRET: read when used, so jobs that do not charge or notify run without them.
    "stripe": stripe_resource(),
    "notify": notify_resource(),
}

defs = dg.Definitions.merge(
    ingestion_defs,
    transform_defs,
    ledger_defs,
    alerts_defs,
    payments_defs,
    lifecycle_defs,
    invoicing_defs,
    cycle_defs,
    run_checks_defs,
    # Steps run one after another in the run's own process: the cycle is a chain, and a subprocess
    # per step would re-import the definitions (seconds each) for nothing.
    dg.Definitions(resources=resources, executor=dg.in_process_executor),
)
