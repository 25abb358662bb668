"""SQLite storage: durable runs in one file, with the standard library's ``sqlite3``.

```python
from hephaestus import Hephaestus
from hephaestus.storage.sqlite import SQLiteStorage

async with Hephaestus(storage=SQLiteStorage("runs.db")):
    ...
```

See ``docs/sqlite.md`` for durability settings, several processes on one file, tenants (one
file each), migrations and the figures measured.
"""

from __future__ import annotations

from hephaestus.storage.sqlite._caller import SQLiteCallerTransaction
from hephaestus.storage.sqlite._migrations import applied_versions, migrate, pending_migrations
from hephaestus.storage.sqlite._schema import MIGRATIONS, Migration
from hephaestus.storage.sqlite._storage import SQLiteStorage, SQLiteTransaction

__all__ = [
    "MIGRATIONS",
    "Migration",
    "SQLiteCallerTransaction",
    "SQLiteStorage",
    "SQLiteTransaction",
    "applied_versions",
    "migrate",
    "pending_migrations",
]
