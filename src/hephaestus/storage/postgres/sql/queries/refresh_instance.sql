-- A run as a reader needs it who holds it at revision %(revision)s with %(history_length)s
-- history entries: no row if the run does not exist, else ``select_runs``' columns, then
-- "same" and "full":
-- - "same": the held revision is the stored one; the other columns are NULL (nothing to
--   decode);
-- - else, if every write since the held revision only added or replaced parts and appended
--   history (``reshaped``, ``tracked``: migration 0009), "full" is false and the columns hold
--   only the parts written since and the history entries past the held ones;
-- - else "full" is true and they hold the whole run.
WITH m AS (
    SELECT h.run_id,
           h.revision = %(revision)s AS same,
           NOT (h.revision > %(revision)s AND h.reshaped <= %(revision)s
                AND h.tracked = h.revision) AS whole
    FROM {schema}.workflow_instances AS h
    WHERE h.run_id = %(run_id)s
)
SELECT r.*, m.same, m.whole
FROM m LEFT JOIN LATERAL (
    {select_runs}
    WHERE h.run_id = m.run_id AND NOT m.same
) AS r ON true
