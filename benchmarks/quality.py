"""Retrieval quality on the synthetic shapes world: a needle library with exact ground truth, run
through the real pipeline and the real search service. Shared by ``./dev bench quality`` and the
CI test ``tests/quality/``.

The library (:func:`benchmarks.needle_library.build_library`) is ``frames`` 1280x720 frames in a local frame-source folder
(``videos/<video_id>/frame_<n>.jpg``, ``frames_per_video`` per video) with ``ground_truth.json``
beside it. A few classes are *queried*: for each small-object caption ("a red star"),
``needles`` frames hold one small target (radius 30-45 px) among 4 distractors; for each
large-object caption, ``needles`` frames hold one large object (radius 20-40% of the height).
Every other frame holds only classes that are never queried (mostly small objects among
distractors, some large objects, a few bare backgrounds), so the relevant frames of a caption are
exactly its needles.

Then (:func:`embed_library`) the project's Dagster assets are materialized for every video on an
ephemeral instance, a range of videos per run as a backfill does, into Parquet checkpoints and an
embedded Qdrant index; (:func:`serving`) the real app is started under uvicorn on that index, with
an S3 (moto) bucket holding the hybrid query images; (:func:`query_service`) every caption is sent
over HTTP once per mode; (:func:`exhaustive_rankings`) every frame's stored patch vectors are
scored against the caption's text vector (max cosine per frame): the ceiling a rerank could reach
if it saw every frame.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from benchmarks.needle_library import Library, Query, query_image

K = 10  # recall@K and MRR@K: what a user sees on the first page
QUERY_BUCKET = "framesearch-quality"
COLLECTION = "frames_quality"


# -- pipeline ------------------------------------------------------------------------------------


@contextmanager
def patched_env(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set (or, for None, remove) environment variables for the block; restore them after."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass
class PipelineReport:
    frames: int
    patches: int
    seconds: float
    runs: int
    embedded: int  # frames embedded by these runs (0 when every checkpoint was up to date)


def embed_library(library: Library, work: Path, model: str, pretrained: str, videos_per_run: int = 8) -> PipelineReport:
    """Materialize frame_manifest -> frame_embeddings -> index_sync for every video of the library
    with the project's assets and resources (checkpoints in ``work/checkpoints``, embedded index in
    ``work/qdrant``), ``videos_per_run`` videos per run as the assets' backfill policy runs them."""
    import warnings

    import dagster as dg

    warnings.filterwarnings("ignore", category=dg.BetaWarning)  # BackfillPolicy, used on purpose
    from assets.videos import ASSETS, VIDEOS_PARTITIONS
    from resources.dagster_resources import CheckpointStoreResource, EncoderResource, FrameSourceResource, FramesS3Resource, IndexResource

    resources = {  # the code location's resources (pipelines/definitions.py), pointed at this library
        "encoder": EncoderResource(model=model, pretrained=pretrained),
        "frames": FrameSourceResource(root=str(library.videos), fps=25.0, s3=FramesS3Resource()),
        "store": CheckpointStoreResource(root=str(work / "checkpoints")),
        "index": IndexResource(path=str(work / "qdrant"), collection=COLLECTION),
    }
    instance = dg.DagsterInstance.ephemeral()
    keys = [str(v) for v in library.video_ids]
    instance.add_dynamic_partitions(VIDEOS_PARTITIONS, keys)
    started, embedded, runs = time.perf_counter(), 0, 0
    for first in range(0, len(keys), videos_per_run):
        batch = keys[first : first + videos_per_run]
        with patched_env({"QDRANT_URL": None}):  # the embedded index under work/, whatever the shell says
            result = dg.materialize(
                ASSETS, instance=instance, resources=resources, raise_on_error=False,
                tags={"dagster/asset_partition_range_start": batch[0], "dagster/asset_partition_range_end": batch[-1]},
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            )
        runs += 1
        if not result.success:
            errors = [e.event_specific_data.error.message.strip()[:500] for e in result.all_events if e.is_step_failure]
            raise RuntimeError(f"pipeline run for videos {batch[0]}..{batch[-1]} failed: {' | '.join(errors)}")
        for event in result.get_asset_materialization_events():  # one per video: its own figures
            if event.asset_key.path == ["frame_embeddings"]:
                figures = {k: v.value for k, v in event.materialization.metadata.items()}
                embedded += 0 if figures["up_to_date"] else int(figures["frames"])
        done = min(first + videos_per_run, len(keys))
        print(f"[quality] pipeline: {done}/{len(keys)} videos, {time.perf_counter() - started:.0f} s", flush=True)
    frames = patches = 0
    for path in sorted((work / "checkpoints").glob("video_*.parquet")):
        lengths = pq.read_table(path, columns=["patch_vectors"]).column("patch_vectors").combine_chunks().value_lengths()
        frames, patches = frames + len(lengths), patches + int(np.asarray(lengths).sum())
    return PipelineReport(frames, patches, time.perf_counter() - started, runs, embedded)


# -- the service ---------------------------------------------------------------------------------


@contextmanager
def serving(work: Path, encoder, queries: Sequence[Query], rerank_pool: int | None = None) -> Iterator[str]:  # noqa: ANN001 - a FrameEncoder
    """The real search app under uvicorn over ``work``'s index and checkpoints, with a moto S3
    server holding each caption's query image at ``s3://framesearch-quality/queries/<i>.png``;
    yields the base URL once /healthz answers 200 (index open). ``rerank_pool`` is
    RERANK_POOL_SIZE (None: the service's default)."""
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    from search_service.app import create_app
    from search_service.config import ServiceSettings
    from tests.servers import running_uvicorn

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto logs every request at INFO
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {
        "QDRANT_URL": None, "QDRANT_PATH": str(work / "qdrant"), "QDRANT_COLLECTION": COLLECTION,
        "RERANK_POOL_SIZE": str(rerank_pool) if rerank_pool else None,
        "S3_ENDPOINT_URL": endpoint, "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "quality", "AWS_SECRET_ACCESS_KEY": "quality", "AWS_SESSION_TOKEN": None,
    }
    try:
        with patched_env(env):
            s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
            s3.create_bucket(Bucket=QUERY_BUCKET)
            for i, q in enumerate(queries):
                s3.put_object(Bucket=QUERY_BUCKET, Key=f"queries/{i}.png", Body=query_image(q.colour, q.shape))
            settings = ServiceSettings(checkpoint_dir=str(work / "checkpoints"), allowed_s3_prefixes=(f"s3://{QUERY_BUCKET}",))
            with running_uvicorn(create_app(settings, encoder=encoder)) as base:
                _wait_for_follower(base)
                yield base
    finally:
        moto.stop()


def _wait_for_follower(base: str, timeout_s: float = 120.0) -> None:
    """Until the service's checkpoint follower has once found every checkpoint applied: its
    start-up pass reads every checkpoint and shares the cores with the first requests (at 10,000
    frames it tripled the measured p50), which is start-up work, not a query's cost."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    # The follower's lag counts from its last caught-up poll, or from its start while it never
    # caught up; a lag shorter than the time waited here means a poll caught up since.
    since = time.time()
    while time.time() - since < timeout_s:
        metrics = text_string_to_metric_families(httpx.get(f"{base}/metrics", timeout=10).text)
        lag = next((family.samples[0].value for family in metrics if family.name == "framesearch_follower_lag_seconds"), None)
        if lag is None or lag < time.time() - since - 0.05:  # None: no follower (server mode)
            return
        time.sleep(0.25)
    raise TimeoutError(f"the service's checkpoint follower did not catch up in {timeout_s:.0f} s")


# Each mode: the request path and the body fields beside the query (rerank_alpha left out = the API default).
MODES: dict[str, tuple[str, dict[str, object]]] = {
    "global": ("/search/text", {"rerank": False}),
    "rerank": ("/search/text", {"rerank": True}),
    "rerank_alpha0": ("/search/text", {"rerank": True, "rerank_alpha": 0.0}),
    "hybrid": ("/search/hybrid", {"rerank": True}),
}


@dataclass
class ModeRun:
    rankings: list[list[str]]  # per query: image ids, best first
    latencies_ms: list[float] = field(default_factory=list)


def query_service(base: str, queries: Sequence[Query], modes: Sequence[str] = tuple(MODES), top_k: int = K) -> dict[str, ModeRun]:
    """Every query once per mode over HTTP (one warm-up request per mode first); the rankings and
    the client-side latency of each request."""
    import httpx

    runs: dict[str, ModeRun] = {}
    with httpx.Client(base_url=base, timeout=120) as client:
        for mode in modes:
            path, extra = MODES[mode]
            run = ModeRun([])

            def body(i: int, q: Query, path: str = path, extra: dict = extra) -> dict[str, object]:
                if path == "/search/hybrid":
                    return {"text_query": q.caption, "image_s3_url": f"s3://{QUERY_BUCKET}/queries/{i}.png", "top_k": top_k, **extra}
                return {"query": q.caption, "top_k": top_k, **extra}

            client.post(path, json=body(0, queries[0])).raise_for_status()  # warm-up
            for i, q in enumerate(queries):
                started = time.perf_counter()
                response = client.post(path, json=body(i, q))
                run.latencies_ms.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    raise RuntimeError(f"{mode} {q.caption!r}: {response.status_code} {response.text[:300]}")
                run.rankings.append([r["image_id"] for r in response.json()["results"]])
            runs[mode] = run
    return runs


# -- the exhaustive ceiling ----------------------------------------------------------------------


def text_vectors(encoder, captions: Sequence[str]) -> np.ndarray:  # noqa: ANN001 - a FrameEncoder
    """``(captions, dim)`` text vectors, one caption per call as the service encodes a query: a
    batch of several computes in bf16 with other roundings, enough to swap near-equal frames."""
    return np.stack([encoder.encode_texts([text])[0] for text in captions])


def stored_patches(checkpoints: Path, dim: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Every stored patch vector: the frames' image ids, the patches ``(patches, dim)`` (a frame's
    patches contiguous, frames in id order) and the frame each patch belongs to ``(patches,)``."""
    from resources.checkpoints.format import vectors

    ids: list[str] = []
    flats: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    for path in sorted(checkpoints.glob("video_*.parquet")):
        table = pq.read_table(path, columns=["video_id", "frame_id", "patch_vectors"])
        patches = table.column("patch_vectors").combine_chunks()
        flats.append(vectors(patches.flatten(), dim))  # (patches, dim)
        lengths = np.asarray(patches.value_lengths())  # (frames,)
        owners.append(np.repeat(np.arange(len(ids), len(ids) + len(lengths)), lengths))
        ids += [f"{v}:{f}" for v, f in zip(table.column("video_id").to_pylist(), table.column("frame_id").to_pylist(), strict=True)]
    return ids, np.concatenate(flats), np.concatenate(owners)


def best_patch_scores(flat: np.ndarray, owner: np.ndarray, query_vectors: np.ndarray) -> np.ndarray:
    """``(frames, queries)``: each frame's best patch cosine with each query vector."""
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])  # (frames,) first patch of each
    return np.maximum.reduceat(flat @ query_vectors.T, starts, axis=0)


def exhaustive_rankings(checkpoints: Path, query_vectors: np.ndarray, top_k: int = K) -> list[list[str]]:
    """Per query, the ``top_k`` frames by max cosine between its text vector and the frame's
    stored patch vectors, over every frame of every checkpoint in ``checkpoints``."""
    ids, flat, owner = stored_patches(checkpoints, query_vectors.shape[1])
    order = np.argsort(-best_patch_scores(flat, owner, query_vectors), axis=0, kind="stable")[:top_k]  # (top_k, queries)
    return [[ids[i] for i in order[:, q]] for q in range(query_vectors.shape[0])]


# -- metrics -------------------------------------------------------------------------------------


def recall_at(ranking: Sequence[str], relevant: Sequence[str], k: int = K) -> float:
    """Share of the relevant frames among the first ``k`` results."""
    return len(set(ranking[:k]) & set(relevant)) / len(relevant)


def reciprocal_rank(ranking: Sequence[str], relevant: Sequence[str], k: int = K) -> float:
    """1 / rank of the first relevant frame within the first ``k`` results, else 0."""
    wanted = set(relevant)
    return next((1.0 / rank for rank, item in enumerate(ranking[:k], 1) if item in wanted), 0.0)


def scores(rankings: Sequence[Sequence[str]], queries: Sequence[Query], size: str, k: int = K) -> dict[str, float]:
    """Mean recall@k and MRR@k over the queries of one set (``"small"`` or ``"large"``)."""
    picked = [(r, q) for r, q in zip(rankings, queries) if q.size == size]
    return {
        "recall_at_10": float(np.mean([recall_at(r, q.relevant, k) for r, q in picked])),
        "mrr": float(np.mean([reciprocal_rank(r, q.relevant, k) for r, q in picked])),
    }


def latency(values_ms: Sequence[float]) -> dict[str, float]:
    return {"p50_ms": round(float(np.percentile(values_ms, 50)), 1), "p99_ms": round(float(np.percentile(values_ms, 99)), 1)}
