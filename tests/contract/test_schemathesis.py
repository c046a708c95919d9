"""The API contract, checked from outside (issue 27): Schemathesis generates requests from the
published ``/openapi.json`` - valid ones, which must be accepted, and invalid ones, which must be
refused - and checks every answer against the document (``--checks all``).

The service runs under uvicorn over a small real index, its ingest routes in front of a real
dagster-webserver app (one job on record, so ``/jobs/{job_id}`` has something to find), once open
and once with ``SEARCH_API_KEY``. Each run has a fixed seed and a time budget; any failure or error
fails the test, and its report is in the assertion message. The only exceptions are the repository's
``schemathesis.toml`` entries: what a JSON Schema cannot express, one reason each."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from resources.embedding.encoder import FrameEncoder
from resources.vector_index import VectorIndex
from search_service.app import create_app
from search_service.config import ServiceSettings
from tests.search_service.test_app import SCHEMA, library  # noqa: F401 - the module-scoped index fixture
from tests.search_service.test_ingest import dagster, launch  # noqa: F401 - the webserver fixture
from tests.servers import running_uvicorn

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SEED = 27
BUDGET_S = 30  # per run: the suite's time is shared; run it by hand for longer (README)


def schemathesis_cli() -> str:
    """The schemathesis command of this environment (the dev extras install it)."""
    found = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or shutil.which("schemathesis")
    assert found, "schemathesis is a dev dependency: pip install -e '.[dev]'"
    return found


@pytest.fixture(scope="module")
def job_on_record(dagster: tuple[str, dg.DagsterInstance]) -> Iterator[str]:  # noqa: F811
    """The dagster-webserver's URL, with one (failed) ingest job in its instance."""
    base, instance = dagster
    launch(instance, str(uuid.uuid4()), "2", "0")
    yield base


@pytest.mark.parametrize("api_key", [None, "contract-key"], ids=["open", "with-api-key"])
def test_every_operation_keeps_the_published_contract(library: dict, tiny_encoder: FrameEncoder, job_on_record: str, api_key: str | None, tmp_path: Path) -> None:  # noqa: F811
    settings = ServiceSettings(checkpoint_dir=str(library["store"]), api_key=api_key, dagster_url=job_on_record,
                               allowed_s3_prefixes=("s3://frames/videos/",))
    app = create_app(settings, encoder=tiny_encoder, open_index=lambda dim: VectorIndex.open(SCHEMA, path=library["root"] / "qdrant", lock_timeout_s=10))
    with running_uvicorn(app) as base:
        command = [schemathesis_cli(), "--no-color", "--config-file", str(REPO / "schemathesis.toml"), "run", f"{base}/openapi.json",
                   "--checks", "all", "--seed", str(SEED), "--max-time", str(BUDGET_S), "--workers", "1"]
        if api_key:
            command += ["-H", f"X-API-Key: {api_key}"]
        # Its cache (.schemathesis/) goes to the working directory: a temporary one.
        done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=BUDGET_S + 240,
                              env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false"})
    assert done.returncode == 0, done.stdout[-20_000:] + done.stderr[-5_000:]
    assert "generated" in done.stdout and "Selected: 12/12" in done.stdout, done.stdout[-5_000:]
