-- Delete a run; its parts and history go with it (ON DELETE CASCADE).
DELETE FROM {schema}.workflow_instances WHERE run_id = %(run_id)s
