-- Give up every active run this owner holds (a graceful shutdown) and announce each, so that
-- the other processes take them over at once instead of after the failover interval.
WITH released AS (
    UPDATE {schema}.workflow_instances
    SET owner = NULL
    WHERE owner = %(owner)s AND status IN ('pending', 'running', 'waiting')
    RETURNING run_id
)
SELECT released.run_id, pg_notify(%(channel)s, released.run_id) FROM released
