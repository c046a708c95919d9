"""Ingest job views: a frame is ok only when it is in the index, and a failed run says why.

``job_view`` is checked on run records directly; the whole path (Dagster's GraphQL API, the
failure events, the index lookup) against a real dagster-webserver app served by uvicorn over a
temporary Dagster instance, whose runs are real runs of a small job (one succeeds, one fails).
"""

from __future__ import annotations

import tempfile
import threading
import time
import uuid
from collections.abc import Iterator

import dagster as dg
import pytest
import uvicorn

from resources.embedding.encoder import FrameEncoder
from resources.vector_index.schema import point_id
from search_service.dagster_api import ANY_JOB_TAG, FRAMES_TAG, JOB_TAG, PARTITION_TAG, DagsterApi, RunInfo
from search_service.ingest import job_view
from tests.search_service.test_app import library, make_client, wait_ready  # noqa: F401 - the module-scoped index fixture
from tests.servers import free_port, wait_http_ok

NOW = 1_700_000_000.0


def run(status: str, video: int, frames: str, *, skipped: dict | None = None, failure: str | None = None, ended: float | None = NOW - 60) -> RunInfo:
    return RunInfo(
        run_id=f"run-{video}", status=status, tags={PARTITION_TAG: str(video), FRAMES_TAG: frames, JOB_TAG: "J"},
        start_time=NOW - 120, end_time=ended if status in ("SUCCESS", "FAILURE", "CANCELED") else None,
        metadata={"frame_embeddings": {"skipped": skipped or {}}}, failure=failure,
    )


def test_a_succeeded_frame_missing_from_the_index_is_failed() -> None:
    """Defect 3: a frame was reported ok when its run succeeded, whether or not the index held it."""
    from search_service.ingest import reported_ok

    runs = [run("SUCCESS", 1, "0-2", skipped={"2": "not a recognized image format (16 bytes)"})]
    assert reported_ok(runs) == [point_id(1, 0), point_id(1, 1)]
    view = job_view("J", runs, {point_id(1, 0)}, now=NOW, index_lag_s=10)
    by_frame = {r["frame_id"]: r for r in view["results"]}
    assert by_frame[0]["ok"] is True and by_frame[0]["error"] is None
    assert by_frame[1]["ok"] is False and "not in the index" in by_frame[1]["error"]
    assert by_frame[2]["ok"] is False and "not a recognized image format" in by_frame[2]["error"]
    assert (view["status"], view["successful_items"], view["failed_items"]) == ("completed", 1, 2)


def test_a_frame_is_pending_while_the_index_catches_up() -> None:
    runs = [run("SUCCESS", 1, "0-1", ended=NOW - 1)]
    view = job_view("J", runs, {point_id(1, 0)}, now=NOW, index_lag_s=10)
    assert [r["ok"] for r in view["results"]] == [True, None]
    assert view["status"] == "running" and view["processed_items"] == 1


def test_a_failed_run_gives_its_reason() -> None:
    """Defect 7: failed jobs said only 'run X failure'."""
    runs = [run("FAILURE", 2, "0,5", failure="frame_embeddings: ValueError: video 2 has no usable frame"), run("SUCCESS", 1, "0")]
    view = job_view("J", runs, {point_id(1, 0)}, now=NOW)
    assert view["status"] == "failed" and "video 2 has no usable frame" in view["error"]
    failed = [r for r in view["results"] if r["video_id"] == 2]
    assert len(failed) == 2 and all(r["ok"] is False and "no usable frame" in r["error"] for r in failed)


# -- against a real dagster-webserver -----------------------------------------------------------

VIDEOS = dg.StaticPartitionsDefinition(["1", "2"])


@dg.asset(partitions_def=VIDEOS)
def frame_embeddings(context) -> None:  # noqa: ANN001 - Dagster reads the hint as a string under __future__ annotations
    if context.partition_key == "2":
        raise ValueError("video 2 has no usable frame: 1 of 1 skipped")


DEFS = dg.Definitions(assets=[frame_embeddings], jobs=[dg.define_asset_job("video_pipeline")])


@pytest.fixture(scope="module")
def dagster() -> Iterator[tuple[str, dg.DagsterInstance]]:
    """A dagster-webserver app over a temporary instance, under uvicorn; its base URL and the instance."""
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import EmptyWorkspaceTarget
    from dagster_webserver.app import create_app_from_workspace_process_context

    with tempfile.TemporaryDirectory() as home, dg.DagsterInstance.local_temp(home) as instance:
        with WorkspaceProcessContext(instance, EmptyWorkspaceTarget()) as context:
            port = free_port()
            server = uvicorn.Server(uvicorn.Config(create_app_from_workspace_process_context(context), host="127.0.0.1", port=port, log_level="warning"))
            thread = threading.Thread(target=server.run, daemon=True)
            thread.start()
            base = f"http://127.0.0.1:{port}"
            try:
                wait_http_ok(f"{base}/server_info", alive=thread.is_alive)
                yield base, instance
            finally:
                server.should_exit = True
                thread.join(10)


def launch(instance: dg.DagsterInstance, job_id: str, video: str, frames: str) -> str:
    result = DEFS.resolve_job_def("video_pipeline").execute_in_process(
        instance=instance, partition_key=video, raise_on_error=False,
        tags={JOB_TAG: job_id, ANY_JOB_TAG: "1", FRAMES_TAG: frames},
    )
    return result.run_id


def test_failure_reason_comes_from_the_run_events(dagster: tuple[str, dg.DagsterInstance]) -> None:
    base, instance = dagster
    job_id = str(uuid.uuid4())
    failed = launch(instance, job_id, "2", "0")
    api = DagsterApi(base)
    try:
        [info] = api.runs(JOB_TAG, job_id)
    finally:
        api.close()
    assert info.run_id == failed and info.status == "FAILURE"
    assert info.failure == "frame_embeddings: ValueError: video 2 has no usable frame: 1 of 1 skipped"


def test_jobs_report_reasons_and_check_the_index(dagster: tuple[str, dg.DagsterInstance], library: dict, tiny_encoder: FrameEncoder) -> None:  # noqa: F811
    """Video 1's run succeeds for frames 0, 1 (in the index) and 7 (never indexed); video 2's fails."""
    base, instance = dagster
    job_id = str(uuid.uuid4())
    launch(instance, job_id, "1", "0-1,7")
    launch(instance, job_id, "2", "0")
    with make_client(library, tiny_encoder, dagster_url=base, follow_interval_s=0.2) as client:
        wait_ready(client)
        deadline = time.monotonic() + 30
        while (view := client.get(f"/jobs/{job_id}").json())["status"] == "running":
            # Frame 1:7 waits for the index (an embedded index applies checkpoints a moment later).
            assert {r["image_id"]: r["ok"] for r in view["results"]}["1:7"] is None
            assert time.monotonic() < deadline, view
            time.sleep(0.3)
        listed = client.get("/jobs", params={"limit": 200}).json()["jobs"]
    results = {r["image_id"]: r for r in view["results"]}
    assert results["1:0"]["ok"] is True and results["1:1"]["ok"] is True
    assert results["1:7"]["ok"] is False and "not in the index" in results["1:7"]["error"]
    assert results["2:0"]["ok"] is False and "video 2 has no usable frame" in results["2:0"]["error"]
    assert view["status"] == "failed" and "video 2 has no usable frame" in view["error"]
    assert (view["successful_items"], view["failed_items"]) == (2, 2)
    [summary] = [j for j in listed if j["job_id"] == job_id]
    assert summary["successful_items"] == 2 and "no usable frame" in summary["error"]
