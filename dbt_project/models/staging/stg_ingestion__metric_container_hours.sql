with source as (
    select * from {{ source('ingestion', 'metric_container_hours') }}
),

renamed as (
    select
        hour,
        namespace,
        pod,
        container,
        node as node_name,
        deployment_id,
        account_id,
        attribution,
        present_minutes,
        cpu_usage_core_hours,
        cpu_request_core_hours,
        memory_usage_gib_hours,
        memory_request_gib_hours,
        gpu_request_hours
    from source
)

select * from renamed
