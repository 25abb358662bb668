-- Runs matching every given filter, ordered by creation and paginated. The page is chosen from
-- header rows alone (the inner select, which `explain_runs.sql` shows), so the parts and
-- history of a run are aggregated only for the runs returned, never for rows an OFFSET skips.
{select_runs}
WHERE h.run_id = ANY (ARRAY(
    SELECT h.run_id FROM {schema}.workflow_instances AS h
    WHERE {run_filters}
    ORDER BY h.created_at {direction}, h.seq {direction}
    LIMIT %(limit)s OFFSET %(offset)s))
ORDER BY h.created_at {direction}, h.seq {direction}
