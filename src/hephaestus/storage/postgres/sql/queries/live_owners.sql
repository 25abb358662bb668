-- The owner ids whose session advisory lock is held (their process is alive and connected).
SELECT objid::bigint FROM pg_locks
WHERE locktype = 'advisory' AND classid = %(namespace)s::oid AND objsubid = 2 AND granted
