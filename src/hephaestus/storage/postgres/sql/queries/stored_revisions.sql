-- The stored revisions of several runs (a run without a row does not exist).
SELECT run_id, revision FROM {schema}.workflow_instances WHERE run_id = ANY (%(run_ids)s)
