-- The plan of the containment query's filter, to show that the GIN index serves it.
EXPLAIN SELECT h.run_id FROM {schema}.workflow_instances AS h
WHERE h.state @> %(pattern)s::jsonb
