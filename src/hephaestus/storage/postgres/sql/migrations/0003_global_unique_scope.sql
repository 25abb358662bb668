-- 0003: scope `global` excludes an active run of the same id in any workflow, whatever its scope.
-- A global unique key is the run's id itself; workflow and version keys are "family|id" and
-- "family@version|id". The partial unique index only catches equal keys, so a trigger decides
-- the rest: under a transaction-scoped advisory lock on (schema, id), an insert of an active
-- keyed run fails while another active keyed run of that id has an equal key or either key is
-- global. Runs are inserted active or final and never become active again, so INSERT suffices.
CREATE OR REPLACE FUNCTION {schema}.workflow_instances_unique_scope() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    holder text;
BEGIN
    IF NEW.status NOT IN ('pending', 'running', 'waiting') THEN
        RETURN NEW;
    END IF;
    -- Concurrent inserts of one id queue here; in READ COMMITTED the query below then sees
    -- every run committed before the lock was granted.
    PERFORM pg_advisory_xact_lock(
        hashtextextended('hephaestus.unique.' || TG_TABLE_SCHEMA || '.' || NEW.id, 0));
    SELECT h.run_id INTO holder
    FROM {schema}.workflow_instances AS h
    WHERE h.id = NEW.id
      AND h.run_id <> NEW.run_id
      AND h.unique_key IS NOT NULL
      AND h.status IN ('pending', 'running', 'waiting')
      AND (h.unique_key = NEW.unique_key OR h.unique_key = h.id OR NEW.unique_key = NEW.id)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'active run % of % excludes unique key % (workflow_instances_active_unique_key)',
            holder, NEW.id, NEW.unique_key
            USING ERRCODE = 'unique_violation',
                  CONSTRAINT = 'workflow_instances_active_unique_key';
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER workflow_instances_unique_scope
    BEFORE INSERT ON {schema}.workflow_instances
    FOR EACH ROW WHEN (NEW.unique_key IS NOT NULL)
    EXECUTE FUNCTION {schema}.workflow_instances_unique_scope();
