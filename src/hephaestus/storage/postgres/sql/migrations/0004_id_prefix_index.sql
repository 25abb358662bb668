-- 0004: an index for business id prefixes (LIKE with a constant prefix) whatever the collation.
CREATE INDEX IF NOT EXISTS workflow_instances_id_pattern
    ON {schema}.workflow_instances (id text_pattern_ops);
