with source as (
    select * from {{ source('ingestion', 'machine_rental_hours') }}
),

renamed as (
    select
        hour,
        machine_usage_id,
        account_id,
        machine_id,
        machine_type,
        node_name,
        rented_seconds,
        machine_hours,
        is_ongoing,
        source_updated_at
    from source
)

select * from renamed
