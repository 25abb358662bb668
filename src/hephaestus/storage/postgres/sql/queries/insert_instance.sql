-- Insert a run with its parts and history in one statement (one round trip, atomic).
-- Parts arrive as one JSON array of [kind, key, position, data]; history as an array of
-- entries, numbered from 0.
WITH head AS (
    INSERT INTO {schema}.workflow_instances
        (run_id, id, workflow, workflow_version, status, revision, unique_key, state, extra,
         created_at, updated_at, owner, reshaped, tracked)
    VALUES
        (%(run_id)s, %(id)s, %(workflow)s, %(workflow_version)s, %(status)s, %(revision)s,
         %(unique_key)s, %(state)s::jsonb, %(extra)s::jsonb, %(created_at)s, %(updated_at)s,
         %(owner)s, %(revision)s, %(revision)s)
    RETURNING run_id
), parts AS (
    INSERT INTO {schema}.workflow_instance_parts (run_id, kind, key, position, data)
    SELECT head.run_id, p ->> 0, p ->> 1, (p ->> 2)::int, p -> 3
    FROM head, jsonb_array_elements(%(parts)s::jsonb) AS p
), history AS (
    INSERT INTO {schema}.workflow_instance_history (run_id, position, entry)
    SELECT head.run_id, h.position - 1, h.entry
    FROM head, jsonb_array_elements(%(history)s::jsonb) WITH ORDINALITY AS h (entry, position)
)
SELECT count(*) FROM head
