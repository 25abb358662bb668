-- 0005: an index for `updated_at` ranges (runs changed in a window, runs stuck since...).
-- It costs every write a non-HOT update; drop it if you never filter by update time.
CREATE INDEX IF NOT EXISTS workflow_instances_updated
    ON {schema}.workflow_instances (updated_at);
