-- 0002: indexes for the queries: business id, workflow/version, status, order, JSONB state.
CREATE INDEX IF NOT EXISTS workflow_instances_id ON {schema}.workflow_instances (id, seq);
CREATE INDEX IF NOT EXISTS workflow_instances_workflow
    ON {schema}.workflow_instances (workflow, workflow_version);
CREATE INDEX IF NOT EXISTS workflow_instances_status ON {schema}.workflow_instances (status);
CREATE INDEX IF NOT EXISTS workflow_instances_created
    ON {schema}.workflow_instances (created_at, seq);
CREATE INDEX IF NOT EXISTS workflow_instances_state
    ON {schema}.workflow_instances USING gin (state jsonb_path_ops);
