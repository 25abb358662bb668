-- One run with its parts and history, its header row locked until the transaction ends (the
-- unit of work of a runner that loads, decides and saves a run in one transaction). NO KEY
-- UPDATE: the run's key never changes, and an inbox row written in a caller's open
-- transaction (KEY SHARE through its foreign key) must not hold the runner up.
{select_runs}
WHERE h.run_id = %(run_id)s
FOR NO KEY UPDATE OF h
