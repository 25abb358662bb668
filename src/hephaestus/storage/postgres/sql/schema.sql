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
    updated_at timestamptz NOT NULL,
    owner bigint
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
CREATE INDEX IF NOT EXISTS workflow_instances_id_pattern
    ON {schema}.workflow_instances (id text_pattern_ops);
CREATE INDEX IF NOT EXISTS workflow_instances_updated
    ON {schema}.workflow_instances (updated_at);
CREATE INDEX IF NOT EXISTS workflow_instances_owner ON {schema}.workflow_instances (owner)
    WHERE status IN ('pending', 'running', 'waiting');
CREATE SEQUENCE IF NOT EXISTS {schema}.workflow_owner_seq MAXVALUE 2147483647;

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

-- Inputs sent inside a caller's transaction, applied (and deleted) by the runner.
CREATE TABLE IF NOT EXISTS {schema}.workflow_inbox (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id text NOT NULL REFERENCES {schema}.workflow_instances (run_id) ON DELETE CASCADE,
    input jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS workflow_inbox_run ON {schema}.workflow_inbox (run_id, id);
CREATE INDEX IF NOT EXISTS workflow_inbox_created ON {schema}.workflow_inbox (created_at);

-- Scope `global` excludes an active run of the same id in any workflow, whatever its scope.
-- A global unique key is the run's id itself; workflow and version keys are "family|id" and
-- "family@version|id". The partial unique index only catches equal keys, so a trigger decides
-- the rest: under a transaction-scoped advisory lock on (schema, id), an insert of an active
-- keyed run fails while another active keyed run of that id has an equal key or either key is
-- global. Runs are inserted active or final and never become active again, so INSERT suffices.
CREATE OR REPLACE FUNCTION {schema}.workflow_instances_unique_scope() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    holder text;
BEGIN
    IF NEW.status NOT IN ('pending', 'running', 'waiting') THEN
        RETURN NEW;
    END IF;
    -- Concurrent inserts of one id queue here; in READ COMMITTED the query below then sees
    -- every run committed before the lock was granted.
    PERFORM pg_advisory_xact_lock(
        hashtextextended('hephaestus.unique.' || TG_TABLE_SCHEMA || '.' || NEW.id, 0));
    SELECT h.run_id INTO holder
    FROM {schema}.workflow_instances AS h
    WHERE h.id = NEW.id
      AND h.run_id <> NEW.run_id
      AND h.unique_key IS NOT NULL
      AND h.status IN ('pending', 'running', 'waiting')
      AND (h.unique_key = NEW.unique_key OR h.unique_key = h.id OR NEW.unique_key = NEW.id)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'active run % of % excludes unique key % (workflow_instances_active_unique_key)',
            holder, NEW.id, NEW.unique_key
            USING ERRCODE = 'unique_violation',
                  CONSTRAINT = 'workflow_instances_active_unique_key';
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER workflow_instances_unique_scope
    BEFORE INSERT ON {schema}.workflow_instances
    FOR EACH ROW WHEN (NEW.unique_key IS NOT NULL)
    EXECUTE FUNCTION {schema}.workflow_instances_unique_scope();
