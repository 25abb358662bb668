-- Runs matching every given filter, ordered by creation and paginated.
{select_runs}
WHERE {run_filters}
ORDER BY h.created_at {direction}, h.seq {direction}
LIMIT %(limit)s OFFSET %(offset)s
