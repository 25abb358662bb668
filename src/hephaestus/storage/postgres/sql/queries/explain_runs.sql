-- The plan of a page of the runs query (header rows only), to check that indexes serve it.
EXPLAIN SELECT h.run_id FROM {schema}.workflow_instances AS h
WHERE {run_filters}
ORDER BY h.created_at {direction}, h.seq {direction}
LIMIT %(limit)s OFFSET %(offset)s
