-- The runs of one instance id matching the other filters (a NULL parameter means "no filter"):
-- `h.id = ...` is not optional here, so even a generic (prepared) plan reads the runs of that
-- id through `workflow_instances_id`, whatever the number of stored runs.
SELECT
    h.run_id,
    h.revision,
    h.state::text,
    h.extra::text,
    (SELECT coalesce(json_agg(json_build_array(p.kind, p.key, p.data)
                              ORDER BY p.kind, p.position), '[]')
     FROM {schema}.workflow_instance_parts AS p WHERE p.run_id = h.run_id)::text,
    (SELECT coalesce(json_agg(e.entry ORDER BY e.position), '[]')
     FROM {schema}.workflow_instance_history AS e WHERE e.run_id = h.run_id)::text
FROM {schema}.workflow_instances AS h
WHERE h.id = %(id)s::text
  AND (%(statuses)s::text[] IS NULL OR h.status = ANY (%(statuses)s::text[]))
  AND (%(workflows)s::text[] IS NULL OR h.workflow = ANY (%(workflows)s::text[]))
  AND (%(workflow_version)s::int IS NULL OR h.workflow_version = %(workflow_version)s::int)
ORDER BY h.created_at {direction}, h.seq {direction}
LIMIT %(limit)s OFFSET %(offset)s
