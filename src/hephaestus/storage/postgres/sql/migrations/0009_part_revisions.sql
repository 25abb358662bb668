-- 0009: a process that holds a run reads again only what changed since (issue 12: the
-- branches of a wide fan-out each read the run). `revision` of a part: the run's revision
-- that last wrote it. `reshaped`: the last revision that deleted parts or rewrote history
-- (reading by difference from an older revision is then not possible). `tracked`: the last
-- revision written by a writer that maintains both; while it is the run's revision, every
-- write since any tracked revision is accounted for (a writer that does not, an older
-- version of this library, breaks the chain and readers read the whole run).
ALTER TABLE {schema}.workflow_instance_parts
    ADD COLUMN IF NOT EXISTS revision bigint NOT NULL DEFAULT 0;
ALTER TABLE {schema}.workflow_instances
    ADD COLUMN IF NOT EXISTS reshaped bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS tracked bigint NOT NULL DEFAULT -1;
