-- Tell the storage's listeners that a run needs attention. Inside a transaction PostgreSQL
-- delivers the notification only when it commits (never if it rolls back).
SELECT pg_notify(%(channel)s, %(run_id)s)
