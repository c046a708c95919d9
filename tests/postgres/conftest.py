"""The PostgreSQL server the tests in this folder share (one per session)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.postgres.pg import Postgres, available, running_postgres


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    reason = available()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL tests: {reason}")
        pytest.skip(reason)
    with running_postgres() as server:
        yield server
