-- The runs of one instance id matching the other filters (a NULL parameter means "no filter"):
-- `h.id = ...` is not optional here, so even a generic (prepared) plan reads the runs of that
-- id through `workflow_instances_id`, whatever the number of stored runs.
{select_runs}
WHERE h.id = %(id)s::text
  AND (%(statuses)s::text[] IS NULL OR h.status = ANY (%(statuses)s::text[]))
  AND (%(workflows)s::text[] IS NULL OR h.workflow = ANY (%(workflows)s::text[]))
  AND (%(workflow_version)s::int IS NULL OR h.workflow_version = %(workflow_version)s::int)
ORDER BY h.created_at {direction}, h.seq {direction}
LIMIT %(limit)s OFFSET %(offset)s
