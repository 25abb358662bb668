-- Runs as readers need them who hold copies of them: %(held)s is a JSON array of objects
-- with "run_id", "revision" and "history_length": each copy's revision and history length (-1, 0:
-- no copy). One row per run that exists: ``select_runs``' columns, then "same", "full" and the
-- run id:
-- - "same": the held revision is the stored one; the other columns are NULL (nothing to
--   decode);
-- - else, if every write since the held revision only added or replaced parts and appended
--   history (``reshaped``, ``tracked``: migration 0009), "full" is false and the columns hold
--   only the parts written since and the history entries past the held ones;
-- - else "full" is true and they hold the whole run.
WITH m AS (
    SELECT d.*,
           -- What to read: parts written after "parts_after", history from "history_from"
           -- (a plain range on the history's key).
           CASE WHEN d.whole THEN -1 ELSE d.held_revision END AS parts_after,
           CASE WHEN d.whole THEN 0 ELSE d.held_history END AS history_from
    FROM (
        SELECT h.run_id,
               i.revision AS held_revision,
               i.history_length AS held_history,
               h.revision = i.revision AS same,
               NOT (h.revision > i.revision AND h.reshaped <= i.revision
                    AND h.tracked = h.revision) AS whole
        FROM jsonb_to_recordset(%(held)s::jsonb) AS i (run_id text, revision bigint,
                                                      history_length integer)
        JOIN {schema}.workflow_instances AS h ON h.run_id = i.run_id
    ) AS d
)
SELECT r.*, m.same, m.whole, m.run_id
FROM m LEFT JOIN LATERAL (
    {select_runs}
    WHERE h.run_id = m.run_id AND NOT m.same
) AS r ON true
