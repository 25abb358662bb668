-- Serialise concurrent installs/migrations of one schema for this transaction.
SELECT pg_advisory_xact_lock(hashtext('hephaestus.migrations.' || %(schema)s))
