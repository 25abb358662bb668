-- One run with its parts and history, as JSON text.
{select_runs}
WHERE h.run_id = %(run_id)s
