-- Add an input to a run's inbox and tell the listeners, in one statement. The run row is
-- neither locked nor updated: the runner applies the input when the caller's transaction
-- has committed. The announcement names the run's owner when it has one ("run_id owner"),
-- so that the other processes need not ask whether the run is theirs.
WITH entry AS (
    INSERT INTO {schema}.workflow_inbox (run_id, input)
    VALUES (%(run_id)s, %(input)s::jsonb)
    RETURNING run_id
)
SELECT pg_notify(%(channel)s, entry.run_id || coalesce(' ' || t.owner::text, ''))
FROM entry JOIN {schema}.workflow_instances AS t USING (run_id)
