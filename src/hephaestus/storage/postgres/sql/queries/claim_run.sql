-- Make one active run ours if nobody owns it or its owner is gone (its lock is not held), and
-- say whether it is ours afterwards: a row when it is (taken now, or ours already, which
-- writes nothing); none when a live process owns it or it is not active.
WITH taken AS (
    UPDATE {schema}.workflow_instances AS t
    SET owner = %(owner)s
    WHERE t.run_id = %(run_id)s
      AND t.status IN ('pending', 'running', 'waiting')
      AND (t.owner IS NULL OR (t.owner <> %(owner)s AND NOT EXISTS (
            SELECT FROM pg_locks AS l
            WHERE l.locktype = 'advisory' AND l.classid = %(namespace)s::oid
              AND l.objsubid = 2 AND l.granted AND l.objid = t.owner::oid)))
    RETURNING t.run_id
)
SELECT run_id FROM taken
UNION ALL
SELECT run_id FROM {schema}.workflow_instances
WHERE run_id = %(run_id)s AND owner = %(owner)s AND status IN ('pending', 'running', 'waiting')
