-- The current schema in one piece: what every migration, applied in order, builds.
CREATE TABLE IF NOT EXISTS {schema}.workflow_instances (
    run_id text PRIMARY KEY,
    seq bigint GENERATED ALWAYS AS IDENTITY,
    id text NOT NULL,
    workflow text NOT NULL,
    workflow_version integer NOT NULL CHECK (workflow_version > 0),
    status text NOT NULL
        CHECK (status IN ('pending', 'running', 'waiting', 'completed', 'failed', 'cancelled')),
    revision bigint NOT NULL,
    unique_key text,
    state jsonb NOT NULL DEFAULT '{{}}',
    extra jsonb NOT NULL DEFAULT '{{}}',
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
) WITH (fillfactor = 70);

CREATE UNIQUE INDEX IF NOT EXISTS workflow_instances_active_unique_key
    ON {schema}.workflow_instances (unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('pending', 'running', 'waiting');
CREATE INDEX IF NOT EXISTS workflow_instances_id ON {schema}.workflow_instances (id, seq);
CREATE INDEX IF NOT EXISTS workflow_instances_workflow
    ON {schema}.workflow_instances (workflow, workflow_version);
CREATE INDEX IF NOT EXISTS workflow_instances_status ON {schema}.workflow_instances (status);
CREATE INDEX IF NOT EXISTS workflow_instances_created
    ON {schema}.workflow_instances (created_at, seq);
CREATE INDEX IF NOT EXISTS workflow_instances_state
    ON {schema}.workflow_instances USING gin (state jsonb_path_ops);

CREATE TABLE IF NOT EXISTS {schema}.workflow_instance_parts (
    run_id text NOT NULL REFERENCES {schema}.workflow_instances (run_id) ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN ('step', 'join', 'member', 'result')),
    key text NOT NULL,
    position integer NOT NULL,
    data jsonb NOT NULL,
    PRIMARY KEY (run_id, kind, key)
);

CREATE TABLE IF NOT EXISTS {schema}.workflow_instance_history (
    run_id text NOT NULL REFERENCES {schema}.workflow_instances (run_id) ON DELETE CASCADE,
    position integer NOT NULL,
    entry jsonb NOT NULL,
    PRIMARY KEY (run_id, position)
);
