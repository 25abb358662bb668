-- The projection of a run that every read query filters: its header row, then its parts and
-- its history aggregated as JSON text (decoded by `_rows.decode_row`), then its position in
-- creation order (a page's cursor). Alone: every run. ``{parts_since}`` and
-- ``{history_since}`` narrow the parts and history to what changed (``refresh_instance``);
-- empty for every other read.
SELECT
    h.run_id,
    h.revision,
    h.state::text,
    h.extra::text,
    (SELECT coalesce(json_agg(json_build_array(p.kind, p.key, p.data)
                              ORDER BY p.kind, p.position), '[]')
     FROM {schema}.workflow_instance_parts AS p WHERE p.run_id = h.run_id{parts_since})::text,
    (SELECT coalesce(json_agg(e.entry ORDER BY e.position), '[]')
     FROM {schema}.workflow_instance_history AS e WHERE e.run_id = h.run_id{history_since})::text,
    h.created_at,
    h.seq
FROM {schema}.workflow_instances AS h
