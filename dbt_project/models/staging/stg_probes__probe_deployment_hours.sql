with source as (
    select * from {{ source('probes', 'probe_deployment_hours') }}
),

renamed as (
    select
        hour,
        deployment_id,
        measured_minutes,
        down_minutes,
        60 - measured_minutes as unmeasured_minutes,
        minute_states
    from source
)

select * from renamed
