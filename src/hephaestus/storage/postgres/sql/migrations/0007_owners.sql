-- 0007: every active run has one owning process (issue 11). `owner` is the owner id a process
-- drew from `workflow_owner_seq` when it registered, and holds as a session advisory lock
-- for as long as it lives; NULL: nobody owns the run (started in a caller's transaction,
-- released at shutdown). Only the owner writes a run (writes are fenced by this column).
ALTER TABLE {schema}.workflow_instances ADD COLUMN IF NOT EXISTS owner bigint;
CREATE INDEX IF NOT EXISTS workflow_instances_owner ON {schema}.workflow_instances (owner)
    WHERE status IN ('pending', 'running', 'waiting');
CREATE SEQUENCE IF NOT EXISTS {schema}.workflow_owner_seq MAXVALUE 2147483647;
