"""The SQLite schema as versioned migrations, and every statement the storage runs.

A run is stored as in PostgreSQL (``hephaestus.storage._rows``): a header row, one row per
part (step state, step result, join, join member) and one per history entry, so a step writes
what it changed, not the whole run. Times are integer microseconds since the epoch (UTC),
which sort and compare exactly. Tenants are separate database files.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MIGRATIONS", "Migration"]

ACTIVE = "('pending', 'running', 'waiting')"


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema change: its version (applied in order, recorded once) and statements."""

    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "initial",
        (
            f"""CREATE TABLE workflow_instances (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                run_id TEXT NOT NULL UNIQUE,
                id TEXT NOT NULL,
                workflow TEXT NOT NULL,
                workflow_version INTEGER NOT NULL CHECK (workflow_version > 0),
                status TEXT NOT NULL CHECK (status IN {ACTIVE[:-1]}, 'completed', 'failed',
                    'cancelled')),
                revision INTEGER NOT NULL,
                unique_key TEXT,
                state TEXT NOT NULL,
                extra TEXT NOT NULL,
                created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL,
                owner INTEGER
            )""",
            # One active run per unique key, decided by the database when the row is inserted.
            f"""CREATE UNIQUE INDEX workflow_instances_active_unique_key
                ON workflow_instances (unique_key)
                WHERE unique_key IS NOT NULL AND status IN {ACTIVE}""",
            "CREATE INDEX workflow_instances_id ON workflow_instances (id, seq)",
            """CREATE INDEX workflow_instances_workflow
                ON workflow_instances (workflow, workflow_version)""",
            "CREATE INDEX workflow_instances_status ON workflow_instances (status)",
            "CREATE INDEX workflow_instances_created ON workflow_instances (created_at, seq)",
            "CREATE INDEX workflow_instances_updated ON workflow_instances (updated_at)",
            f"""CREATE INDEX workflow_instances_owner ON workflow_instances (owner)
                WHERE status IN {ACTIVE}""",
            # Scope `global` and version keys exclude more than equal keys (see
            # hephaestus._core.unique.keys_collide): the trigger refuses those. SQLite runs
            # one writer at a time, so the check and the insert cannot interleave with
            # another insert.
            f"""CREATE TRIGGER workflow_instances_unique_scope
                BEFORE INSERT ON workflow_instances
                WHEN NEW.unique_key IS NOT NULL AND NEW.status IN {ACTIVE}
                BEGIN
                    SELECT RAISE(ABORT, 'workflow_instances_active_unique_key')
                    WHERE EXISTS (
                        SELECT 1 FROM workflow_instances AS h
                        WHERE h.id = NEW.id AND h.run_id <> NEW.run_id
                          AND h.unique_key IS NOT NULL AND h.status IN {ACTIVE}
                          AND (h.unique_key = NEW.unique_key OR h.unique_key = h.id
                               OR NEW.unique_key = NEW.id));
                END""",
            """CREATE TABLE workflow_instance_parts (
                run_id TEXT NOT NULL,
                kind TEXT NOT NULL CHECK (kind IN ('step', 'join', 'member', 'result')),
                key TEXT NOT NULL,
                position INTEGER NOT NULL,
                data TEXT NOT NULL,
                PRIMARY KEY (run_id, kind, key)
            ) WITHOUT ROWID""",
            """CREATE TABLE workflow_instance_history (
                run_id TEXT NOT NULL,
                position INTEGER NOT NULL,
                entry TEXT NOT NULL,
                PRIMARY KEY (run_id, position)
            ) WITHOUT ROWID""",
            # Inputs sent to a run its owner applies (forwarded, or sent in a caller's
            # transaction).
            """CREATE TABLE workflow_inbox (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                run_id TEXT NOT NULL,
                input TEXT NOT NULL,
                created_at INTEGER NOT NULL
            )""",
            "CREATE INDEX workflow_inbox_run ON workflow_inbox (run_id, id)",
            "CREATE INDEX workflow_inbox_created ON workflow_inbox (created_at)",
            # The processes that own runs: each holds an flock on its own lock file while it
            # lives (see _owners).
            """CREATE TABLE workflow_owners (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                pid INTEGER NOT NULL,
                host TEXT NOT NULL,
                started_at INTEGER NOT NULL
            )""",
            # SQLite has no NOTIFY: what PostgreSQL would announce is appended here, and the
            # other processes read what is new when PRAGMA data_version says a commit happened.
            """CREATE TABLE workflow_announcements (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                run_id TEXT NOT NULL,
                owner INTEGER,
                at INTEGER NOT NULL
            )""",
            "CREATE INDEX workflow_announcements_at ON workflow_announcements (at)",
        ),
    ),
)

# -- bookkeeping ------------------------------------------------------------------------------

CREATE_MIGRATIONS = """CREATE TABLE IF NOT EXISTS hephaestus_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
)"""
APPLIED = "SELECT version FROM hephaestus_migrations ORDER BY version"
RECORD = "INSERT INTO hephaestus_migrations (version, name) VALUES (?, ?)"
HAS_MIGRATIONS = (
    "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'hephaestus_migrations'"
)
TABLES = "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"

# -- runs ---------------------------------------------------------------------------------------

SELECT_RUNS = """SELECT
    h.run_id,
    h.revision,
    h.state,
    h.extra,
    (SELECT json_group_array(json_array(p.kind, p.key, json(p.data)))
     FROM (SELECT kind, key, data FROM workflow_instance_parts
           WHERE run_id = h.run_id ORDER BY kind, position) AS p),
    (SELECT json_group_array(json(e.entry))
     FROM (SELECT entry FROM workflow_instance_history
           WHERE run_id = h.run_id ORDER BY position) AS e),
    h.created_at,
    h.seq
FROM workflow_instances AS h"""
"""A run as ``_rows.decode_row`` reads it: header, parts and history as JSON texts, position."""

GET_RUN = SELECT_RUNS + " WHERE h.run_id = ?"

INSERT_RUN = """INSERT INTO workflow_instances
    (run_id, id, workflow, workflow_version, status, revision, unique_key, state, extra,
     created_at, updated_at, owner)
VALUES
    (:run_id, :id, :workflow, :workflow_version, :status, :revision, :unique_key, :state,
     :extra, :created_at, :updated_at, :owner)"""

UPDATE_RUN = """UPDATE workflow_instances
SET workflow = :workflow,
    workflow_version = :workflow_version,
    status = :status,
    revision = :revision,
    unique_key = :unique_key,
    state = coalesce(:state, state),
    extra = :extra,
    updated_at = :updated_at
WHERE run_id = :run_id AND revision = :expected
  AND owner IS :owner"""
"""The next revision of a run's header, written only over the expected revision and only by
the run's owner (fencing: a deposed owner's write changes nothing)."""

UPSERT_PARTS = """INSERT INTO workflow_instance_parts AS t (run_id, kind, key, position, data)
SELECT :run_id, value ->> 0, value ->> 1, value ->> 2, value -> 3 FROM json_each(:parts) WHERE true
ON CONFLICT (run_id, kind, key) DO UPDATE
SET position = CASE WHEN excluded.position < 0 THEN t.position ELSE excluded.position END,
    data = excluded.data"""

DROP_PARTS = """DELETE FROM workflow_instance_parts
WHERE run_id = :run_id
  AND (kind, key) IN (SELECT value ->> 0, value ->> 1 FROM json_each(:drop))"""

KEEP_ONLY_PARTS = """DELETE FROM workflow_instance_parts
WHERE run_id = :run_id
  AND (kind, key) NOT IN (SELECT value ->> 0, value ->> 1 FROM json_each(:parts))"""

WRITE_HISTORY = """INSERT INTO workflow_instance_history AS t (run_id, position, entry)
SELECT :run_id, :history_start + key, value FROM json_each(:history) WHERE true
ON CONFLICT (run_id, position) DO UPDATE SET entry = excluded.entry"""

TRIM_HISTORY = """DELETE FROM workflow_instance_history
WHERE run_id = :run_id AND position >= :history_length"""

STORED_REVISION = "SELECT revision, owner FROM workflow_instances WHERE run_id = ?"

DELETE_RUN = (
    "DELETE FROM workflow_instances WHERE run_id = ?",
    "DELETE FROM workflow_instance_parts WHERE run_id = ?",
    "DELETE FROM workflow_instance_history WHERE run_id = ?",
    "DELETE FROM workflow_inbox WHERE run_id = ?",
)

RUN_FILTERS = """(:id IS NULL OR h.id = :id)
  AND (:id_prefix IS NULL OR (h.id >= :id_prefix
       AND substr(h.id, 1, length(:id_prefix)) = :id_prefix))
  AND (:statuses IS NULL OR h.status IN (SELECT value FROM json_each(:statuses)))
  AND (:workflows IS NULL OR h.workflow IN (SELECT value FROM json_each(:workflows)))
  AND (:workflow_version IS NULL OR h.workflow_version = :workflow_version)
  AND (:contains IS NULL OR hephaestus_contains(h.state, :contains))
  AND (:created_after IS NULL OR h.created_at >= :created_after)
  AND (:created_before IS NULL OR h.created_at < :created_before)
  AND (:updated_after IS NULL OR h.updated_at >= :updated_after)
  AND (:updated_before IS NULL OR h.updated_at < :updated_before)"""
"""The filters of a query (a NULL parameter: no filter); metadata containment is decided by
``hephaestus_contains``, a function each connection registers (JSONB ``@>``'s rules)."""


def query_runs(*, newest_first: bool, after: bool) -> str:
    """Runs matching the filters, in creation order, after a cursor, paginated."""
    direction = "DESC" if newest_first else "ASC"
    keyset = ""
    if after:
        keyset = (
            f" AND (h.created_at, h.seq) {'<' if newest_first else '>'} "
            "(:after_created, :after_seq)"
        )
    return (
        f"{SELECT_RUNS} WHERE h.seq IN (SELECT h.seq FROM workflow_instances AS h "
        f"WHERE {RUN_FILTERS}{keyset} ORDER BY h.created_at {direction}, h.seq {direction} "
        f"LIMIT :limit OFFSET :offset) "
        f"ORDER BY h.created_at {direction}, h.seq {direction}"
    )


def count_runs(columns: tuple[str, ...]) -> str:
    grouped = ", ".join(f"h.{column}" for column in columns)
    select = f"{grouped}, count(*)" if columns else "count(*)"
    group = f" GROUP BY {grouped}" if columns else ""
    return f"SELECT {select} FROM workflow_instances AS h WHERE {RUN_FILTERS}{group}"


# -- inbox, owners, announcements -----------------------------------------------------------

ENQUEUE_INPUT = "INSERT INTO workflow_inbox (run_id, input, created_at) VALUES (?, ?, ?)"
NEXT_INPUT = "SELECT id, input, created_at FROM workflow_inbox WHERE run_id = ? ORDER BY id LIMIT 1"
DELETE_INPUT = "DELETE FROM workflow_inbox WHERE id = ?"
ANNOUNCE = """INSERT INTO workflow_announcements (run_id, owner, at)
SELECT :run_id, (SELECT owner FROM workflow_instances WHERE run_id = :run_id), :at"""
PRUNE_ANNOUNCEMENTS = "DELETE FROM workflow_announcements WHERE at < ?"
ANNOUNCED_SINCE = "SELECT id, run_id, owner FROM workflow_announcements WHERE id > ? ORDER BY id"
LAST_ANNOUNCEMENT = "SELECT coalesce(max(id), 0) FROM workflow_announcements"
AWAITING = """SELECT run_id FROM workflow_instances
WHERE status = 'pending' AND created_at < :before
UNION
SELECT run_id FROM workflow_inbox WHERE created_at < :before
LIMIT :limit"""
REGISTER_OWNER = "INSERT INTO workflow_owners (pid, host, started_at) VALUES (?, ?, ?) RETURNING id"
FORGET_OWNERS = "DELETE FROM workflow_owners WHERE id IN (SELECT value FROM json_each(?))"
OWNER_OF = f"SELECT owner, status IN {ACTIVE} FROM workflow_instances WHERE run_id = ?"
TAKE_RUN = "UPDATE workflow_instances SET owner = ? WHERE run_id = ?"
OTHER_OWNERS = f"""SELECT DISTINCT owner FROM workflow_instances
WHERE status IN {ACTIVE} AND owner IS NOT NULL AND owner <> ?"""
REGISTERED_OWNERS = "SELECT id FROM workflow_owners WHERE id <> ?"
"""Every other owner ever registered and not forgotten (those that died owning no active run
included: they are forgotten, and their lock files removed, once found dead)."""
TAKE_ORPHANS = f"""UPDATE workflow_instances SET owner = :owner
WHERE seq IN (
    SELECT seq FROM workflow_instances
    WHERE status IN {ACTIVE}
      AND (owner IS NULL OR owner IN (SELECT value FROM json_each(:gone)))
      AND (:workflows IS NULL OR workflow IN (SELECT value FROM json_each(:workflows)))
    ORDER BY created_at, seq
    LIMIT :limit)
RETURNING run_id"""
RELEASE_RUNS = f"""UPDATE workflow_instances SET owner = NULL
WHERE owner = ? AND status IN {ACTIVE}
RETURNING run_id"""
