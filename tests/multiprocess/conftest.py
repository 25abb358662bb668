"""A fresh database per test, with the storage installed and the ``executions`` table."""

from __future__ import annotations

from typing import TYPE_CHECKING

import psycopg
import pytest

from tests._pg import create_installed_database, drop_database, dsn, require_postgres
from tests.multiprocess._flows import EXECUTIONS_TABLE

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def database_url() -> Iterator[str]:
    """The connection string of a database of this test's own, dropped afterwards."""
    require_postgres()
    name = create_installed_database("hx_mp")
    url = dsn(name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(EXECUTIONS_TABLE)
    yield url
    drop_database(name)
