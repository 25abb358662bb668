-- Register this process as an owner: draw a new owner id and hold it as a session advisory
-- lock (in the schema's namespace) for the life of this connection. PostgreSQL releases the lock
-- when the session ends for any reason (exit, kill, lost connection): that is how the other
-- processes learn that this owner is gone.
SELECT owner, pg_advisory_lock(%(namespace)s, owner::int) IS NOT NULL
FROM (SELECT nextval('{schema}.workflow_owner_seq') AS owner) AS drawn
