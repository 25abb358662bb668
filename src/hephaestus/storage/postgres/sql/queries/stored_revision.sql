-- The stored revision and status of a run (no row: the run does not exist).
SELECT revision, status FROM {schema}.workflow_instances WHERE run_id = %(run_id)s
