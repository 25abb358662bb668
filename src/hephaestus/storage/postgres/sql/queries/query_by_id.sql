-- The runs of one instance id matching the other filters (a NULL parameter means "no filter"):
-- `h.id = ...` is not optional here, so even a generic (prepared) plan reads the runs of that
-- id through `workflow_instances_id`, whatever the number of stored runs.
{select_runs}
WHERE h.id = %(id)s::text
  AND {run_filters}
ORDER BY h.created_at {direction}, h.seq {direction}
LIMIT %(limit)s OFFSET %(offset)s
