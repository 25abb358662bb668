-- Remove an inbox entry (applied, or unusable).
DELETE FROM {schema}.workflow_inbox WHERE id = %(id)s
