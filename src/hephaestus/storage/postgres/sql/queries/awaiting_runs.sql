-- Runs with work a lost notification may have left behind: pending runs and runs with inbox
-- entries, created before %(before)s (the sweep's safety net).
SELECT run_id FROM {schema}.workflow_instances
WHERE status = 'pending' AND created_at < %(before)s
UNION
SELECT run_id FROM {schema}.workflow_inbox
WHERE created_at < %(before)s
LIMIT %(limit)s
