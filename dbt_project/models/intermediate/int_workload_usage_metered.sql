-- Workload consumption per hour, deployment, node and resource, with both quantities a
-- basis can ask for. max(request, usage) is taken per container and hour (the OpenCost
-- rule) before summing, so one idle container cannot hide in another's usage.
-- GPUs are billed on requests; storage on requested GiB-hours; egress on GiB sent.
with containers as (
    select * from {{ ref('stg_ingestion__metric_container_hours') }}
),

network as (
    select * from {{ ref('stg_ingestion__metric_pod_network_hours') }}
),

volumes as (
    select * from {{ ref('stg_ingestion__metric_volume_hours') }}
),

container_resources as (
    select
        containers.hour,
        containers.account_id,
        containers.deployment_id,
        containers.node_name,
        r.resource,
        r.unit,
        r.usage_quantity,
        r.max_request_usage_quantity
    from containers
    cross join lateral (
        values
        (
            'cpu', 'core_hour', containers.cpu_usage_core_hours,
            greatest(containers.cpu_request_core_hours, containers.cpu_usage_core_hours)
        ),
        (
            'memory', 'gib_hour', containers.memory_usage_gib_hours,
            greatest(containers.memory_request_gib_hours, containers.memory_usage_gib_hours)
        ),
        ('gpu', 'gpu_hour', containers.gpu_request_hours, containers.gpu_request_hours)
    ) as r (resource, unit, usage_quantity, max_request_usage_quantity)
),

all_resources as (
    select * from container_resources
    union all
    select
        hour,
        account_id,
        deployment_id,
        node_name,
        'network_egress' as resource,
        'gib' as unit,
        egress_gib as usage_quantity,
        egress_gib as max_request_usage_quantity
    from network
    union all
    select
        hour,
        account_id,
        deployment_id,
        null::text as node_name,
        'storage' as resource,
        'gib_hour' as unit,
        storage_gib_hours as usage_quantity,
        storage_gib_hours as max_request_usage_quantity
    from volumes
)

select
    hour,
    account_id,
    deployment_id,
    node_name,
    resource,
    unit,
    sum(usage_quantity) as usage_quantity,
    sum(max_request_usage_quantity) as max_request_usage_quantity
from all_resources
where usage_quantity <> 0 or max_request_usage_quantity <> 0
group by hour, account_id, deployment_id, node_name, resource, unit
