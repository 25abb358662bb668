-- Versions of the migrations applied so far (none if the table does not exist yet).
SELECT version FROM {schema}.hephaestus_migrations ORDER BY version
