-- Record one applied migration, as a literal statement (for the printed SQL of `db sql`).
INSERT INTO {schema}.hephaestus_migrations (version, name) VALUES ({version}, {name})
ON CONFLICT (version) DO NOTHING;
