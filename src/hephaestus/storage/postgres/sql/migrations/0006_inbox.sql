-- 0006: the inbox of inputs (resume, cancel) sent inside a caller's transaction. A row is
-- visible once that transaction commits; the runner applies it to the run and deletes it in
-- the same transaction as the run's update. Writing one never locks or updates the run row
-- (the foreign key takes KEY SHARE, which the runner's NO KEY UPDATE does not wait for).
CREATE TABLE IF NOT EXISTS {schema}.workflow_inbox (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id text NOT NULL REFERENCES {schema}.workflow_instances (run_id) ON DELETE CASCADE,
    input jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS workflow_inbox_run ON {schema}.workflow_inbox (run_id, id);
CREATE INDEX IF NOT EXISTS workflow_inbox_created ON {schema}.workflow_inbox (created_at);
