-- Take over up to `limit` active runs (of `workflows`, when given) nobody owns or whose owner
-- is gone (failover). Rows another process is claiming at the same moment are skipped, so
-- survivors share the work.
WITH live AS (
    SELECT objid::bigint AS owner FROM pg_locks
    WHERE locktype = 'advisory' AND classid = %(namespace)s::oid AND objsubid = 2 AND granted
), orphans AS (
    SELECT t.run_id FROM {schema}.workflow_instances AS t
    WHERE t.status IN ('pending', 'running', 'waiting')
      AND (t.owner IS NULL OR t.owner NOT IN (SELECT owner FROM live))
      AND t.owner IS DISTINCT FROM %(owner)s
      AND (%(workflows)s::text[] IS NULL OR t.workflow = ANY (%(workflows)s::text[]))
    ORDER BY t.created_at
    LIMIT %(limit)s
    FOR NO KEY UPDATE SKIP LOCKED
)
UPDATE {schema}.workflow_instances AS t
SET owner = %(owner)s
FROM orphans
WHERE t.run_id = orphans.run_id
RETURNING t.run_id
