-- One run with its parts and history, as JSON text, unless its stored revision is
-- %(revision)s: then only its header's run id and revision, with NULL for the rest (a reader
-- that holds that revision already decodes nothing). No row: the run does not exist.
{select_runs}
WHERE h.run_id = %(run_id)s AND h.revision <> %(revision)s
UNION ALL
SELECT run_id, revision, NULL, NULL, NULL, NULL, created_at, seq
FROM {schema}.workflow_instances
WHERE run_id = %(run_id)s AND revision = %(revision)s
