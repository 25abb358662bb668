-- Lock one run's header row until the transaction ends (the unit of work of a runner that
-- loads, decides and saves a run in one transaction); the run is read next, by a statement of
-- its own: in READ COMMITTED a statement that waited for the lock sees the locked row as it
-- is now but every other row (the run's parts, its history) as it was when the statement
-- began, so reading the run in the locking statement could miss what the previous holder of
-- the lock wrote. NO KEY UPDATE: the run's key never changes, and an inbox row written in a
-- caller's open transaction (KEY SHARE through its foreign key) must not hold the runner up.
SELECT run_id FROM {schema}.workflow_instances
WHERE run_id = %(run_id)s
FOR NO KEY UPDATE
