-- The stored revision of a run (no row: the run does not exist).
SELECT revision FROM {schema}.workflow_instances WHERE run_id = %(run_id)s
