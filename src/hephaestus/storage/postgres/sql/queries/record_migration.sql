-- Record one applied migration.
INSERT INTO {schema}.hephaestus_migrations (version, name) VALUES (%(version)s, %(name)s)
ON CONFLICT (version) DO NOTHING
