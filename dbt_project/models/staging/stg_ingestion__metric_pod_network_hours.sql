with source as (
    select * from {{ source('ingestion', 'metric_pod_network_hours') }}
),

renamed as (
    select
        hour,
        namespace,
        pod,
        node as node_name,
        deployment_id,
        account_id,
        attribution,
        egress_gib
    from source
)

select * from renamed
