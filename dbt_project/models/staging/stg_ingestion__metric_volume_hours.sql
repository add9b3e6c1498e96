with source as (
    select * from {{ source('ingestion', 'metric_volume_hours') }}
),

renamed as (
    select
        hour,
        namespace,
        persistentvolumeclaim as pvc_name,
        deployment_id,
        account_id,
        attribution,
        requested_bytes,
        storage_gib_hours
    from source
)

select * from renamed
