-- Fails with PostgreSQL's own error when the schema is not installed, or not migrated to the
-- run owners of migration 0007: checked before a process registers as an owner.
SELECT t.owner FROM {schema}.workflow_instances AS t WHERE false
UNION ALL
SELECT last_value FROM {schema}.workflow_owner_seq WHERE false
