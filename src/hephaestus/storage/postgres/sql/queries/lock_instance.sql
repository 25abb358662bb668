-- One run with its parts and history, its header row locked until the transaction ends (the
-- unit of work of a runner that loads, decides and saves a run in one transaction).
{select_runs}
WHERE h.run_id = %(run_id)s
FOR UPDATE OF h
