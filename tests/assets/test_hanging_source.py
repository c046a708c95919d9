"""Issue 21: an S3 endpoint that accepts requests and never answers (a hanging load balancer, a
stuck proxy). The run must fail within a bound the README states, record nothing as skipped, and a
re-run once the endpoint answers again must index every frame.

The endpoint is a real HTTP server in front of moto (``tests.servers.HangingProxy``) that hangs the
requests the test chooses: the listings (the manifest stage) or the frame GETs (the embed stage).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import dagster as dg
import pytest

from assets.videos import ASSETS, VIDEOS_PARTITIONS
from resources.checkpoints.format import published_path
from resources.dagster_resources import FrameSourceResource, FramesS3Resource
from resources.vector_index.schema import point_id
from tests.assets.test_videos import index_ids, partition_metadata, partition_range, png
from tests.servers import HangingProxy

VIDEOS = (40, 41, 42)
FRAMES = 5
TIMEOUT_S, ATTEMPTS, WAITS = 1.0, 2, [0.2]


def _frames(endpoint: str) -> FrameSourceResource:
    s3 = FramesS3Resource(
        endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing",
        max_attempts=ATTEMPTS, timeout_seconds=TIMEOUT_S,
    )
    return FrameSourceResource(root="s3://hanging/lib/", fps=10.0, outage_retry_waits_s=WAITS, s3=s3)


def _is_listing(path: str) -> bool:
    return "list-type" in path or "delimiter" in path


def _video_of(path: str) -> str:
    """The video a request is for: the key's folder, or a listing's prefix (``lib/40/``)."""
    url = urlsplit(path)
    key = parse_qs(url.query).get("prefix", [""])[0] or unquote(url.path).split("/", 2)[2]
    return key.split("/")[1]


def _bound_s() -> float:
    """The README's bound on a run against a hanging endpoint: each step attempt waits out one
    request (attempts x timeout plus the client's backoff, under 1 s a retry here), then the
    attempts' waits; plus the run's own start (the model load) - generous for a loaded CI machine."""
    per_attempt = ATTEMPTS * TIMEOUT_S + (ATTEMPTS - 1) * 1.0
    return (1 + len(WAITS)) * per_attempt + sum(WAITS) + 30.0


@pytest.fixture
def library(s3_client: Any) -> None:
    if "hanging" not in {b["Name"] for b in s3_client.list_buckets()["Buckets"]}:
        s3_client.create_bucket(Bucket="hanging")
    for video_id in VIDEOS:
        for f in range(FRAMES):
            s3_client.put_object(Bucket="hanging", Key=f"lib/{video_id}/frame_{f:03d}.png", Body=png(160, 120, video_id * 10 + f))


def _run(pipeline, instance: dg.DagsterInstance, endpoint: str) -> tuple[dg.ExecuteInProcessResult, float]:  # noqa: ANN001
    started = time.monotonic()
    result = dg.materialize(
        ASSETS, instance=instance, resources={**pipeline.resources, "frames": _frames(endpoint)},
        tags=partition_range(str(VIDEOS[0]), str(VIDEOS[-1])), raise_on_error=False,
    )
    return result, time.monotonic() - started


def _failure_text(result: dg.ExecuteInProcessResult) -> str:
    return "\n".join(e.event_specific_data.error.message for e in result.all_events if e.is_step_failure)


@pytest.mark.parametrize("stage", ["listing", "frames"])
def test_a_hanging_s3_endpoint_fails_the_run_fast_and_the_rerun_indexes_everything(
    pipeline, library, moto_s3_endpoint: str, stage: str,  # noqa: ANN001
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(VIDEOS_PARTITIONS, [str(v) for v in VIDEOS])
    with HangingProxy(moto_s3_endpoint) as proxy:
        if stage == "listing":
            proxy.hang = lambda method, path: _is_listing(path)
        else:  # listings answer, every frame GET hangs
            proxy.hang = lambda method, path: method == "GET" and not _is_listing(path)
        failed, seconds = _run(pipeline, instance, proxy.url)

        assert not failed.success
        assert seconds < _bound_s(), f"the run took {seconds:.1f} s against a hanging endpoint (bound {_bound_s():.0f} s)"
        # Only the first video waited on the endpoint, once per step attempt; the others were not
        # tried (before: each video of the run waited out its own timeouts, on every attempt).
        assert proxy.hung and {_video_of(path) for _, path in proxy.hung} == {str(VIDEOS[0])}, proxy.hung
        failure = _failure_text(failed)
        assert "retried 1 times" in failure and "timeout" in failure.lower()
        for video_id in VIDEOS[1:]:
            assert f"video {video_id} (waiting): not tried: video {VIDEOS[0]} met an outage" in failure
        # Nothing recorded: no materialization past the manifests, no checkpoint, no skipped frame.
        assert not [e for e in failed.get_asset_materialization_events() if e.asset_key.path != ["frame_manifest"]]
        assert not any(published_path(Path(pipeline.root) / "checkpoints", v).exists() for v in VIDEOS)

        proxy.hang = lambda method, path: False  # the endpoint answers again
        again, _ = _run(pipeline, instance, proxy.url)
    assert again.success
    for video_id in VIDEOS:
        embed = partition_metadata(again, "frame_embeddings", video_id)
        assert (embed["frames"], embed["frames_skipped"]) == (FRAMES, 0)
        assert index_ids(Path(pipeline.root), video_id) == {point_id(video_id, f) for f in range(FRAMES)}
