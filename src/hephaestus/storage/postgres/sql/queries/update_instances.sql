-- Write the next revision of several runs in one statement (``write_runs.sql``); returns
-- the run ids it wrote (a run whose stored revision was not the expected one is left alone).
WITH {write_runs}
SELECT run_id FROM head
