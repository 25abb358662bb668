-- The oldest input in a run's inbox (as JSON text).
SELECT id, input::text, created_at
FROM {schema}.workflow_inbox
WHERE run_id = %(run_id)s
ORDER BY id
LIMIT 1
