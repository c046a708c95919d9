"""The per-video pipeline, materialized for real on ephemeral Dagster instances: local folder and
S3 (moto's server over HTTP) sources, the embedded index, re-runs, shrinking and bad frames."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from assets.videos import ASSETS, VIDEOS_PARTITIONS, videos_partitions
from resources.checkpoints.format import published_path, read_metadata, vectors
from resources.dagster_resources import (
    EncoderResource,
    FrameSourceResource,
    FramesS3Resource,
    s3_resource_from_env,
)
from resources.vector_index import VectorIndex
from resources.vector_index.schema import IndexSchema, point_id
from tests.conftest import WORLD_DESCRIPTION, make_frame

REPO = Path(__file__).resolve().parents[2]



def png(width: int, height: int, seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(make_frame(width, height, seed).permute(1, 2, 0).numpy()).save(buffer, "PNG")
    return buffer.getvalue()


def write_video(root: Path, video_id: int, frames: int, seed: int = 0) -> Path:
    folder = root / str(video_id)
    folder.mkdir(parents=True, exist_ok=True)
    for f in range(frames):
        (folder / f"frame_{f:04d}.png").write_bytes(png(160, 120, seed * 100 + f))
    return folder


def metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    """The asset's metadata in this run (a run of several partitions reports it on each)."""
    events = [e for e in result.get_asset_materialization_events() if e.asset_key.path == [asset]]
    return {k: v.value for k, v in events[-1].materialization.metadata.items()}


def index_ids(root: Path, video_id: int) -> set[str]:
    with VectorIndex.open(IndexSchema("frames_test", 64), path=root / "qdrant") as index:
        hits = index.search(np.ones(64, np.float32), top_k=1000)
    return {h.point_id for h in hits if h.payload["video_id"] == video_id}


def test_local_folder_to_index(pipeline) -> None:
    write_video(pipeline.root / "videos", 7, frames=6)
    result = pipeline(7)
    assert result.success
    embed = metadata(result, "frame_embeddings")
    assert (embed["frames"], embed["frames_skipped"], embed["chunks"]) == (6, 0, 2)
    assert embed["weights_random"] is True and set(embed["seconds"]) >= {"fetch", "decode", "patch_plan", "embed", "write"}
    assert all(isinstance(embed[f"seconds_{stage}"], float) for stage in embed["seconds"])  # flat: Dagster plots them
    assert embed["weights_kind"] == "random"
    assert all(c.passed for c in result.get_asset_check_evaluations())
    assert index_ids(pipeline.root, 7) == {point_id(7, f) for f in range(6)}
    table = pq.read_table(published_path(pipeline.root / "checkpoints", 7))
    assert table.column("timestamp_ms").to_pylist() == [0, 40, 80, 120, 160, 200]  # 25 fps


def test_offline_fallback_says_what_the_model_is_in_run_and_checkpoint_metadata(pipeline, world_model_dir: Path) -> None:
    """Configured weights missing: the resource runs the offline model folder, and both the run's
    metadata and the checkpoint's footer name it and what it knows."""
    write_video(pipeline.root / "videos", 4, frames=2)
    encoder = EncoderResource(
        model="ViT-B-32", pretrained=str(pipeline.root / "absent.safetensors"), precision="fp32",
        offline_fallback=True, offline_model_dir=str(world_model_dir),
    )
    assert encoder.expected_model_id() is not None and encoder.expected_model_id().startswith("framesearch-world/")
    pipeline.resources["encoder"] = encoder
    result = pipeline(4)
    assert result.success
    embed = metadata(result, "frame_embeddings")
    assert embed["model_id"] == encoder.expected_model_id()
    assert (embed["weights_random"], embed["weights_kind"], embed["weights_description"]) == (False, "synthetic-world", WORLD_DESCRIPTION)
    footer = read_metadata(published_path(pipeline.root / "checkpoints", 4))
    assert footer["weights_random"] is False and footer["model_id"] == embed["model_id"]
    assert footer["weights_provenance"]["kind"] == "synthetic-world" and footer["weights_provenance"]["description"] == WORLD_DESCRIPTION
    assert footer["weights_provenance"]["caption_accuracy"] == 0.73  # what training recorded travels too


def test_frames_are_found_by_their_own_vectors(pipeline) -> None:
    write_video(pipeline.root / "videos", 3, frames=4, seed=3)
    assert pipeline(3).success
    table = pq.read_table(published_path(pipeline.root / "checkpoints", 3))
    query = vectors(table.column("global_vector"), 64)[2]
    with VectorIndex.open(IndexSchema("frames_test", 64), path=pipeline.root / "qdrant") as index:
        [best] = index.search(query, top_k=1)
    assert best.payload["image_id"] == "3:2" and best.score == pytest.approx(1.0, abs=1e-5)


def test_s3_source_through_moto_server(pipeline, s3_client, moto_s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    s3_client.create_bucket(Bucket="frames-bucket")
    for f in range(5):
        s3_client.put_object(Bucket="frames-bucket", Key=f"library/12/frame_{f:03d}.png", Body=png(160, 120, f))
    # Configured exactly as a deployment is: S3_ENDPOINT_URL and the standard credential chain.
    for name, value in {
        "S3_ENDPOINT_URL": moto_s3_endpoint, "AWS_REGION": "us-east-1", "S3_TIMEOUT_SECONDS": "5",
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
    }.items():
        monkeypatch.setenv(name, value)
    frames = FrameSourceResource(root="s3://frames-bucket/library/", fps=10.0, s3=s3_resource_from_env())
    assert frames.s3.endpoint_url == moto_s3_endpoint and frames.s3.timeout_seconds == 5.0
    result = pipeline(12, frames=frames)
    assert result.success
    assert metadata(result, "frame_embeddings")["frames"] == 5
    assert index_ids(pipeline.root, 12) == {point_id(12, f) for f in range(5)}
    table = pq.read_table(published_path(pipeline.root / "checkpoints", 12))
    assert table.column("url").to_pylist()[0] == "s3://frames-bucket/library/12/frame_000.png"


def test_rerun_changes_nothing_and_shrinking_removes_frames(pipeline) -> None:
    folder = write_video(pipeline.root / "videos", 4, frames=6)
    assert pipeline(4).success
    before = index_ids(pipeline.root, 4)
    again = pipeline(4)
    redone = metadata(again, "frame_embeddings")
    assert redone["up_to_date"] is True and "up to date, nothing embedded" in redone["summary"]
    assert not [k for k in redone if k.startswith("seconds") or k == "frames_per_s"]  # no zeros over the real timings
    assert metadata(again, "index_sync")["unchanged"] is True and index_ids(pipeline.root, 4) == before
    (folder / "frame_0001.png").unlink()
    (folder / "frame_0005.png").unlink()
    shrunk = pipeline(4)
    assert metadata(shrunk, "index_sync")["deleted"] == 2
    assert index_ids(pipeline.root, 4) == {point_id(4, f) for f in (0, 2, 3, 4)}


def test_a_deferred_sync_is_reported_as_deferred_not_passed(pipeline) -> None:
    """While another holder has the embedded index (the search service), the sync is deferred to
    its follower: the run says so, and the check warns instead of passing on a count never made."""
    write_video(pipeline.root / "videos", 8, frames=2)
    with VectorIndex.open(IndexSchema("frames_test", 64), path=pipeline.root / "qdrant"):
        result = pipeline(8)
    assert result.success
    synced = metadata(result, "index_sync")
    assert synced["deferred"] is True and "points" not in synced and "deferred" in synced["summary"].lower()
    [check] = [c for c in check_evaluations(result) if c.check_name == "points_match_checkpoint"]
    assert (check.passed, check.severity, check.partition) == (False, dg.AssetCheckSeverity.WARN, "8")


def test_bad_frames_are_skipped_and_reported(pipeline) -> None:
    folder = write_video(pipeline.root / "videos", 9, frames=4)
    (folder / "frame_0001.png").write_bytes(b"\x89PNG\r\n\x1a\n corrupt")
    (folder / "frame_0002.png").write_bytes(b"")
    rows = ["frame_id,timestamp_ms,url"] + [f"{f},{f * 40},frame_{f:04d}.png" for f in range(4)] + ["7,280,frame_0007.png"]
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")  # frame 7 is listed but missing
    result = pipeline(9)
    assert result.success
    embed = metadata(result, "frame_embeddings")
    assert embed["frames"] == 2 and embed["frames_skipped"] == 3
    assert set(embed["skipped"]) == {"1", "2", "7"} and "missing" in embed["skipped"]["7"]
    assert "empty" in embed["skipped"]["2"]
    assert index_ids(pipeline.root, 9) == {point_id(9, 0), point_id(9, 3)}


def test_a_video_without_usable_frames_fails_clearly(pipeline) -> None:
    folder = pipeline.root / "videos" / "5"
    folder.mkdir(parents=True)
    (folder / "frame_1.png").write_bytes(b"nope")
    result = pipeline(5, raise_on_error=False)
    assert not result.success
    assert "video 5: no usable frame among 1" in str(result.all_events)


def test_workspace_loads_as_dagster_dev_loads_it() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "All code locations passed validation" in completed.stdout + completed.stderr


def test_one_run_can_take_several_videos(pipeline) -> None:
    """What a backfill does under the assets' BackfillPolicy: one run, a range of videos, each
    with its own figures."""
    for video_id, frames in ((21, 2), (22, 3), (23, 1)):
        write_video(pipeline.root / "videos", video_id, frames=frames, seed=video_id)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(VIDEOS_PARTITIONS, ["21", "22", "23"])
    result = dg.materialize(ASSETS, instance=instance, resources=pipeline.resources, tags=partition_range("21", "23"))
    assert result.success
    for video_id, frames in ((21, 2), (22, 3), (23, 1)):
        assert partition_metadata(result, "frame_embeddings", video_id)["frames"] == frames
        assert partition_metadata(result, "index_sync", video_id)["points"] == frames
        assert index_ids(pipeline.root, video_id) == {point_id(video_id, f) for f in range(frames)}


def partition_range(first: str, last: str) -> dict[str, str]:
    """The tags a backfill puts on a run of several partitions."""
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


def partition_metadata(result: dg.ExecuteInProcessResult, asset: str, video_id: int) -> dict:
    """The metadata of one partition's materialization in this run (exactly one is expected)."""
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.path == [asset] and e.partition == str(video_id)]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_a_bad_video_in_a_multi_video_run_fails_only_itself(pipeline) -> None:
    """Issue 12: videos 5 (3 good + 3 junk frames) and 6 (junk only) in one run. Video 5 is
    materialized, indexed and searchable with its own figures and checks; video 6 fails with its
    reasons, its partitions marked failed, nothing of it published or indexed."""
    folder = write_video(pipeline.root / "videos", 5, frames=3, seed=5)
    for f in (3, 4, 5):
        (folder / f"frame_{f:04d}.png").write_bytes(b"junk" * f)
    junk = pipeline.root / "videos" / "6"
    junk.mkdir()
    for f in (0, 1, 2):
        (junk / f"frame_{f:04d}.png").write_bytes(b"" if f == 0 else b"not an image")
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(VIDEOS_PARTITIONS, ["5", "6"])
    result = dg.materialize(ASSETS, instance=instance, resources=pipeline.resources, tags=partition_range("5", "6"), raise_on_error=False)

    assert not result.success
    failure = str([e.event_specific_data.error.message for e in result.all_events if e.is_step_failure])
    assert "video 6 (embed): video 6: no usable frame among 3" in failure and "video 5" not in failure
    embed = partition_metadata(result, "frame_embeddings", 5)
    assert (embed["frames"], embed["frames_skipped"], embed["up_to_date"]) == (3, 3, False)
    assert [r.data["frame_id"] for r in embed["skipped_frames"].records] == [3, 4, 5]
    assert embed["seconds_embed"] > 0 and isinstance(embed["seconds_fetch"], float)
    assert embed["checkpoint"] == str(published_path(pipeline.root / "checkpoints", 5))
    assert partition_metadata(result, "index_sync", 5)["points"] == 3
    assert partition_metadata(result, "frame_manifest", 6)["frames"] == 3  # listing it worked
    assert not [e for e in result.get_asset_materialization_events() if e.partition == "6" and e.asset_key.path != ["frame_manifest"]]
    checks = {(c.check_name, c.partition): c.passed for c in check_evaluations(result)}
    assert checks == {("rows_match_manifest", "5"): True, ("vectors_finite_unit_norm", "5"): True, ("points_match_checkpoint", "5"): True}
    # Each result points at the materialization it judged: what the UI's per-partition status goes by.
    materialized = {(e.asset_key.path[0], e.partition): e for e in result.get_asset_materialization_events()}
    for check in check_evaluations(result):
        assert check.target_materialization_data is not None and check.target_materialization_data.run_id == result.run_id
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey("frame_embeddings"), asset_partitions=["5"]), limit=1).records
    [rows_check] = [c for c in check_evaluations(result) if c.check_name == "rows_match_manifest"]
    assert rows_check.target_materialization_data.storage_id == records[0].storage_id and ("frame_embeddings", "5") in materialized
    [why] = [e for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION" and e.partition == "6"]
    assert "no usable frame" in why.event_specific_data.asset_observation.metadata["reason"].value

    status = {key: partition_status(instance, key) for key in ("frame_manifest", "frame_embeddings", "index_sync")}
    assert status == {"frame_manifest": ({"5", "6"}, set()), "frame_embeddings": ({"5"}, {"6"}), "index_sync": ({"5"}, {"6"})}
    assert not published_path(pipeline.root / "checkpoints", 6).exists()
    assert index_ids(pipeline.root, 5) == {point_id(5, f) for f in range(3)}
    with VectorIndex.open(IndexSchema("frames_test", 64), path=pipeline.root / "qdrant") as index:
        assert index.video_ids() == {5}


def check_evaluations(result: dg.ExecuteInProcessResult) -> list[dg.AssetCheckEvaluation]:
    """Every asset check evaluation of the run."""
    return [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]


def partition_status(instance: dg.DagsterInstance, asset: str) -> tuple[set[str], set[str]]:
    """(materialized, failed) partitions of ``asset`` as the UI shows them."""
    from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value

    value = get_and_update_asset_status_cache_value(instance, dg.AssetKey(asset), videos_partitions)
    assert value is not None
    return (
        set(value.deserialize_materialized_partition_subsets(videos_partitions).get_partition_keys()),
        set(value.deserialize_failed_partition_subsets(videos_partitions).get_partition_keys()),
    )


# --- An S3 outage mid-run: the drill of issue 9 ---------------------------------------------------

_DRILL: dict = {}  # the moto server of the drill, and the GetObject call before which it stops


class OutageS3(FramesS3Resource):
    """The deployment's S3 resource, whose clients stop the drill's moto server just before the
    GetObject call number ``_DRILL["stop_before_get"]``: an outage at an exact point of a run,
    through botocore's public event hooks (the client itself is the real one)."""

    def get_client(self):  # noqa: ANN201 - a boto3 S3 client
        client = super().get_client()

        def before_get(**_: object) -> None:
            _DRILL["gets"] += 1
            if _DRILL["gets"] == _DRILL["stop_before_get"]:
                _DRILL["server"].stop()
                if _DRILL.get("restart_after_s"):  # a short outage: back after a moment
                    threading.Timer(_DRILL["restart_after_s"], _DRILL["restart"]).start()

        client.meta.events.register("before-call.s3.GetObject", before_get)
        return client


@pytest.fixture
def drill_s3() -> Iterator[tuple[str, Any]]:
    """A moto server of the drill's own (it is stopped and restarted), and a client to fill it."""
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    first = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    first.start()
    host, port = first.get_host_and_port()
    endpoint = f"http://{host}:{port}"

    def restart() -> None:
        # moto keeps its objects in this process: a server on the same port serves the same bucket.
        _DRILL["server"] = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
        _DRILL["server"].start()

    _DRILL.clear()
    _DRILL.update(server=first, restart=restart, gets=0, stop_before_get=0)
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    yield endpoint, client
    _DRILL["server"].stop()


def _drill_frames(endpoint: str, s3: type[FramesS3Resource] = FramesS3Resource, waits: list[float] | None = None) -> FrameSourceResource:
    settings = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    # Two attempts of 5 s per request (the client's own retries) and short step retries: a test's pace.
    return FrameSourceResource(
        root="s3://drill/lib/", fps=10.0, outage_retry_waits_s=waits or [],
        s3=s3(**settings, max_attempts=2, timeout_seconds=5.0),
    )


def test_s3_outage_mid_run_fails_keeps_the_index_and_the_rerun_finishes(pipeline, drill_s3) -> None:
    endpoint, client = drill_s3
    client.create_bucket(Bucket="drill")
    for f in range(16):
        client.put_object(Bucket="drill", Key=f"lib/30/frame_{f:03d}.png", Body=png(160, 120, f))
    assert pipeline(30, frames=_drill_frames(endpoint)).success
    assert index_ids(pipeline.root, 30) == {point_id(30, f) for f in range(16)}

    for f in range(16, 20):  # 4 more frames: a new plan of 5 chunks of 4
        client.put_object(Bucket="drill", Key=f"lib/30/frame_{f:03d}.png", Body=png(160, 120, f))
    _DRILL.update(gets=0, stop_before_get=9)  # moto stops after 2 of 5 chunks were read
    failed = pipeline(30, frames=_drill_frames(endpoint, OutageS3, waits=[0.2]), raise_on_error=False)
    assert not failed.success  # moto stays down: the step's one retry fails fast too, and the run fails
    failure = str(failed.all_events)
    assert "stopped at chunk 3/5" in failure and "Could not connect" in failure and "retried 1 times" in failure
    assert not [e for e in failed.get_asset_materialization_events() if e.asset_key.path != ["frame_manifest"]]
    assert index_ids(pipeline.root, 30) == {point_id(30, f) for f in range(16)}  # no shrink
    checkpoint = pq.read_table(published_path(pipeline.root / "checkpoints", 30))
    assert checkpoint.num_rows == 16  # the old checkpoint stands; no skip was persisted anywhere
    chunks = sorted(p.name for p in (pipeline.root / "checkpoints" / "_work" / "video_30").glob("chunk_*"))
    assert chunks == ["chunk_00000.parquet", "chunk_00001.parquet"]

    _DRILL["restart"]()  # moto back, same objects
    again = pipeline(30, frames=_drill_frames(endpoint))
    assert again.success
    embed = metadata(again, "frame_embeddings")
    assert (embed["frames"], embed["frames_skipped"], embed["chunks_resumed"], embed["up_to_date"]) == (20, 0, 2, False)
    assert index_ids(pipeline.root, 30) == {point_id(30, f) for f in range(20)}


def test_a_short_s3_outage_heals_by_the_step_retry(pipeline, drill_s3) -> None:
    endpoint, client = drill_s3
    client.create_bucket(Bucket="drill")
    for f in range(8):
        client.put_object(Bucket="drill", Key=f"lib/31/frame_{f:03d}.png", Body=png(160, 120, f))
    # Down before the 5th frame, back 1 s later: the step's retry 3 s later resumes the finished chunk.
    _DRILL.update(gets=0, stop_before_get=5, restart_after_s=1.0)
    result = pipeline(31, frames=_drill_frames(endpoint, OutageS3, waits=[3.0]))
    assert result.success
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert [e.step_key for e in retries] == ["video_assets"]
    embed = metadata(result, "frame_embeddings")
    assert (embed["frames"], embed["frames_skipped"], embed["chunks_resumed"]) == (8, 0, 1)
    assert index_ids(pipeline.root, 31) == {point_id(31, f) for f in range(8)}


def test_staleness_in_dagsters_terms(pipeline) -> None:
    """frame_embeddings partitions are fresh after a run, also after an up-to-date re-run, and
    stale ("has a new code version") when the code location's code version changes - a change of
    model or patch settings (assets.videos.embedding_code_version)."""
    from dagster._core.definitions.assets.graph.asset_graph import AssetGraph
    from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleCauseCategory, StaleStatus
    from dagster._core.loader import LoadingContextForTest

    write_video(pipeline.root / "videos", 11, frames=2)
    instance = dg.DagsterInstance.ephemeral()

    def status(code_version: str | None = None) -> tuple[StaleStatus, set]:
        specs = dg.map_asset_specs(
            lambda spec: spec.replace_attributes(code_version=code_version) if code_version and spec.key.path == ["frame_embeddings"] else spec, ASSETS,
        )
        resolver = CachingStaleStatusResolver(instance, AssetGraph.from_assets(specs), LoadingContextForTest(instance))
        key = dg.AssetKey("frame_embeddings")
        return resolver.get_status(key, "11"), {c.category for c in resolver.get_stale_causes(key, "11")}

    instance.add_dynamic_partitions(VIDEOS_PARTITIONS, ["11"])
    for _ in range(2):  # the second run finds the checkpoint up to date
        assert dg.materialize(ASSETS, partition_key="11", instance=instance, resources=pipeline.resources).success
        assert status() == (StaleStatus.FRESH, set())
    assert status("another-model-or-patch-settings") == (StaleStatus.STALE, {StaleCauseCategory.CODE})
