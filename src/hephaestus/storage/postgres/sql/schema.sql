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
    owner bigint,
    reshaped bigint NOT NULL DEFAULT 0,
    tracked bigint NOT NULL DEFAULT -1
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
    revision bigint NOT NULL DEFAULT 0,
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

-- The tables of the `oban` job library (see migration 0008).
DO $$
BEGIN
    CREATE TYPE {schema}.oban_job_state AS ENUM (
        'available', 'scheduled', 'suspended', 'executing', 'retryable', 'completed',
        'discarded', 'cancelled'
    );
EXCEPTION WHEN duplicate_object THEN NULL;
END
$$;
ALTER TYPE {schema}.oban_job_state ADD VALUE IF NOT EXISTS 'suspended' AFTER 'scheduled';

CREATE TABLE IF NOT EXISTS {schema}.oban_jobs (
    id bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
    state {schema}.oban_job_state NOT NULL DEFAULT 'available',
    queue text NOT NULL DEFAULT 'default',
    worker text NOT NULL,
    attempt smallint NOT NULL DEFAULT 0,
    max_attempts smallint NOT NULL DEFAULT 20,
    priority smallint NOT NULL DEFAULT 0,
    args jsonb NOT NULL DEFAULT '{{}}',
    meta jsonb NOT NULL DEFAULT '{{}}',
    tags text[] NOT NULL DEFAULT ARRAY[]::text[],
    errors jsonb NOT NULL DEFAULT '[]',
    attempted_by text[] NOT NULL DEFAULT ARRAY[]::text[],
    inserted_at timestamp without time zone NOT NULL DEFAULT timezone('UTC', now()),
    scheduled_at timestamp without time zone NOT NULL DEFAULT timezone('UTC', now()),
    attempted_at timestamp without time zone,
    cancelled_at timestamp without time zone,
    completed_at timestamp without time zone,
    discarded_at timestamp without time zone,
    CONSTRAINT attempt_range CHECK (attempt >= 0 AND attempt <= max_attempts),
    CONSTRAINT queue_length CHECK (char_length(queue) > 0),
    CONSTRAINT worker_length CHECK (char_length(worker) > 0),
    CONSTRAINT positive_max_attempts CHECK (max_attempts > 0),
    CONSTRAINT non_negative_priority CHECK (priority >= 0)
);

CREATE UNLOGGED TABLE IF NOT EXISTS {schema}.oban_leaders (
    name text PRIMARY KEY DEFAULT 'oban',
    node text NOT NULL,
    elected_at timestamp without time zone NOT NULL,
    expires_at timestamp without time zone NOT NULL
);

CREATE UNLOGGED TABLE IF NOT EXISTS {schema}.oban_producers (
    uuid uuid PRIMARY KEY,
    name text NOT NULL DEFAULT 'oban',
    node text NOT NULL,
    queue text NOT NULL,
    meta jsonb NOT NULL DEFAULT '{{}}',
    started_at timestamp without time zone NOT NULL DEFAULT timezone('UTC', now()),
    updated_at timestamp without time zone NOT NULL DEFAULT timezone('UTC', now())
);

CREATE INDEX IF NOT EXISTS oban_jobs_state_queue_priority_scheduled_at_id_index
    ON {schema}.oban_jobs (state, queue, priority, scheduled_at, id) WITH (fillfactor = 90);
CREATE INDEX IF NOT EXISTS oban_jobs_staging_index
    ON {schema}.oban_jobs (scheduled_at, id) INCLUDE (queue)
    WHERE state IN ('scheduled', 'retryable');
CREATE INDEX IF NOT EXISTS oban_jobs_completed_at_index
    ON {schema}.oban_jobs (completed_at) WHERE state = 'completed';
CREATE INDEX IF NOT EXISTS oban_jobs_cancelled_at_index
    ON {schema}.oban_jobs (cancelled_at) WHERE state = 'cancelled';
CREATE INDEX IF NOT EXISTS oban_jobs_discarded_at_index
    ON {schema}.oban_jobs (discarded_at) WHERE state = 'discarded';
-- Ours: the live jobs of a run (to cancel them, and for the reconciler to find runs without).
CREATE INDEX IF NOT EXISTS oban_jobs_hephaestus_run
    ON {schema}.oban_jobs ((args ->> 'run'))
    WHERE state IN ('available', 'scheduled', 'executing', 'retryable');

ALTER TABLE {schema}.oban_jobs SET (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_vacuum_threshold = 50,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_analyze_threshold = 100,
    autovacuum_vacuum_cost_limit = 2000,
    autovacuum_vacuum_cost_delay = 1,
    autovacuum_vacuum_insert_scale_factor = 0.02,
    autovacuum_vacuum_insert_threshold = 1000,
    fillfactor = 85
);

CREATE OR REPLACE FUNCTION {schema}.oban_count_estimate(state text, queue text)
RETURNS integer AS $func$
DECLARE
    plan jsonb;
BEGIN
    EXECUTE 'EXPLAIN (FORMAT JSON) SELECT id FROM oban_jobs
             WHERE state = $1::oban_job_state AND queue = $2'
        INTO plan
        USING state, queue;
    RETURN plan->0->'Plan'->'Plan Rows';
END;
$func$
LANGUAGE plpgsql
SET search_path = {schema};  -- its body finds this schema's tables wherever it is called from
