-- 0008: the tables of the `oban` job library (0.7; the same as Oban for Elixir's), in this schema, for
-- the Oban runner: its step and timer jobs commit in the same transaction as the runs they
-- continue. Written here, qualified with the schema, rather than run from oban's own
-- installer, which expects the schema to exist already, fails when run a second time, and
-- leaves a helper function referring to the jobs table unqualified. Every statement is
-- idempotent: a schema where oban is already installed is left as it is.
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
