with source as (
    select * from {{ source('ingestion', 'metric_hours') }}
),

renamed as (
    select
        hour,
        complete as is_complete,
        problems,
        ingested_at
    from source
)

select * from renamed
