-- How many runs match every given filter, grouped by the chosen columns (none: one group).
SELECT {columns}count(*)
FROM {schema}.workflow_instances AS h
WHERE {run_filters}
GROUP BY {groups}
