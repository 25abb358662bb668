-- Who owns one run, and whether that owner is alive.
SELECT t.owner, t.owner IS NOT NULL AND EXISTS (
    SELECT FROM pg_locks AS l
    WHERE l.locktype = 'advisory' AND l.classid = %(namespace)s::oid AND l.objsubid = 2
      AND l.granted AND l.objid = t.owner::oid)
FROM {schema}.workflow_instances AS t
WHERE t.run_id = %(run_id)s
