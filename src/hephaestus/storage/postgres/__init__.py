"""PostgreSQL storage (extra ``hephaestus-workflow[postgres]``): psycopg 3 async, psycopg_pool.

```python
from hephaestus.storage.postgres import PostgresStorage, install

await install("postgresql://localhost/app")            # or: hephaestus db install
async with Hephaestus(storage=PostgresStorage("postgresql://localhost/app")):
    ...
```

See ``docs/postgres.md`` for tables, tenants (one schema each), migrations and queries.
"""

from __future__ import annotations

from hephaestus.storage._rows import containment
from hephaestus.storage.postgres._caller import PostgresCallerTransaction
from hephaestus.storage.postgres._errors import wrap_exceptions
from hephaestus.storage.postgres._migrations import (
    MIGRATIONS,
    Migration,
    applied_versions,
    install,
    migrate,
    migration_sql,
    pending_migrations,
    schema_sql,
)
from hephaestus.storage.postgres._storage import PostgresStorage
from hephaestus.storage.postgres._transaction import UNIQUE_INDEX, PostgresTransaction

__all__ = [
    "MIGRATIONS",
    "UNIQUE_INDEX",
    "Migration",
    "PostgresCallerTransaction",
    "PostgresStorage",
    "PostgresTransaction",
    "applied_versions",
    "containment",
    "install",
    "migrate",
    "migration_sql",
    "pending_migrations",
    "schema_sql",
    "wrap_exceptions",
]
