-- Runs whose state document contains the pattern (JSONB @>, served by the GIN index).
{select_runs}
WHERE h.state @> %(pattern)s::jsonb
ORDER BY h.created_at {direction}, h.seq {direction}
LIMIT %(limit)s OFFSET %(offset)s
