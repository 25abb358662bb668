-- Write the next revision of several runs in one statement (one round trip, one commit): each
-- run's header row, its changed parts and its new history entries. A run is written only if
-- its stored revision is the expected one; the statement returns the run ids it wrote.
--
-- The parameter is a JSON array with one object per run. "state" NULL keeps the stored
-- document (it rarely changes; an unchanged indexed document lets the header update be HOT,
-- with no index writes). "parts" is an array of [kind, key, position, data] (position -1: keep
-- the stored one; only for a part that exists); with "full" they
-- are all of the run's parts (any other is deleted), else only the [kind, key] pairs in "drop"
-- are deleted. History entries are numbered from "history_start"; entries at or past
-- "history_length" are deleted (a rewritten, shorter history). "reshaped": the write deletes
-- parts or rewrites history, so the run cannot be read by difference from before it.
--
-- The common table expressions only (they follow a WITH): ``update_instances.sql`` returns
-- the run ids of ``head``; a runner may add its own writes of the same runs after them.
input AS (
    SELECT *
    FROM jsonb_to_recordset(%(batch)s::jsonb) AS i (
        run_id text, expected bigint, revision bigint, workflow text, workflow_version integer,
        status text, unique_key text, state jsonb, extra jsonb, updated_at timestamptz,
        parts jsonb, "drop" jsonb, "full" boolean, history_start integer, history jsonb,
        history_length integer, owner bigint, reshaped boolean
    )
), locked AS (
    -- The runs' rows locked in one order (by run id): two statements writing some of the same
    -- runs (batches of two processes) wait for one another, never deadlock.
    SELECT t.run_id FROM {schema}.workflow_instances AS t
    WHERE t.run_id IN (SELECT run_id FROM input)
    ORDER BY t.run_id
    FOR NO KEY UPDATE
), head AS (
    UPDATE {schema}.workflow_instances AS t
    SET workflow = i.workflow,
        workflow_version = i.workflow_version,
        status = i.status,
        revision = i.revision,
        unique_key = i.unique_key,
        state = coalesce(i.state, t.state),
        extra = i.extra,
        updated_at = i.updated_at,
        -- Readers of what changed since an older revision (``refresh_instance``) need these.
        reshaped = CASE WHEN i.reshaped THEN i.revision ELSE t.reshaped END,
        tracked = CASE WHEN i."full" OR t.tracked = t.revision THEN i.revision ELSE t.tracked END
    FROM input AS i
    WHERE t.run_id = i.run_id AND t.revision = i.expected
      AND t.run_id IN (SELECT run_id FROM locked)
      AND t.owner IS NOT DISTINCT FROM i.owner  -- fencing: only the run's owner writes it
    RETURNING t.run_id
), done AS (
    SELECT input.* FROM input JOIN head USING (run_id)
), given AS (
    SELECT done.run_id, p ->> 0 AS kind, p ->> 1 AS key, (p ->> 2)::int AS position,
           p -> 3 AS data, done.revision
    FROM done, jsonb_array_elements(done.parts) AS p
), parts AS (
    INSERT INTO {schema}.workflow_instance_parts AS t
        (run_id, kind, key, position, data, revision)
    SELECT run_id, kind, key, position, data, revision FROM given
    ON CONFLICT (run_id, kind, key)
    DO UPDATE SET position = CASE WHEN excluded.position < 0 THEN t.position
                                  ELSE excluded.position END,
                  data = excluded.data,
                  revision = excluded.revision
), dropped AS (
    DELETE FROM {schema}.workflow_instance_parts AS t
    USING done, jsonb_array_elements(done."drop") AS d
    WHERE t.run_id = done.run_id AND t.kind = d ->> 0 AND t.key = d ->> 1
), cleared AS (
    -- Only for full rewrites: filtering "done" first keeps a step's write off the other rows.
    DELETE FROM {schema}.workflow_instance_parts AS t
    USING done
    WHERE done."full" AND t.run_id = done.run_id
      AND NOT EXISTS (
        SELECT FROM given
        WHERE given.run_id = t.run_id AND given.kind = t.kind AND given.key = t.key
      )
), history AS (
    INSERT INTO {schema}.workflow_instance_history AS t (run_id, position, entry)
    SELECT done.run_id, done.history_start + h.position - 1, h.entry
    FROM done, jsonb_array_elements(done.history) WITH ORDINALITY AS h (entry, position)
    ON CONFLICT (run_id, position) DO UPDATE SET entry = excluded.entry
), trimmed AS (
    DELETE FROM {schema}.workflow_instance_history AS t
    USING done
    WHERE t.run_id = done.run_id AND t.position >= done.history_length
)
