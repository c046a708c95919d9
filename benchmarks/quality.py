"""Retrieval quality on the synthetic shapes world: a needle library with exact ground truth, run
through the real pipeline and the real search service. Shared by ``./dev bench quality`` and the
CI test ``tests/quality/``.

The library (:func:`build_library`) is ``frames`` 1280x720 frames in a local frame-source folder
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

import hashlib
import io
import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from training.world import (
    CLASSES,
    WorldFrame,
    WorldObject,
    background_frame,
    caption,
    large_object_frame,
    random_frame,
    render_frame,
)

K = 10  # recall@K and MRR@K: what a user sees on the first page
QUERY_BUCKET = "framesearch-quality"
COLLECTION = "frames_quality"


@dataclass(frozen=True)
class LibrarySpec:
    """What the needle library holds; the same spec always gives the same pixels."""

    frames: int = 2_000
    frames_per_video: int = 250
    small_captions: int = 12  # queried classes drawn small (radius 30-45 px) among 4 distractors
    large_captions: int = 6  # queried classes drawn as one large object (radius 20-40% of the height)
    needles: int = 3  # frames holding each queried class
    width: int = 1280
    height: int = 720
    seed: int = 0
    image_format: str = "jpg"  # jpg (quality 95: mild artefacts, like decoded video) or png
    filler_large: float = 0.10  # share of non-needle frames with one large object of an unqueried class
    filler_background: float = 0.05  # share of non-needle frames with no object

    def __post_init__(self) -> None:
        queried = self.small_captions + self.large_captions
        if queried >= len(CLASSES):
            raise ValueError(f"{queried} queried classes leave none of the {len(CLASSES)} for distractors")
        if queried * self.needles > self.frames:
            raise ValueError(f"{queried} captions x {self.needles} needles do not fit {self.frames} frames")
        if self.image_format not in ("jpg", "png"):
            raise ValueError(f"image_format must be jpg or png, got {self.image_format!r}")

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Query:
    """One caption and the frames that hold its class (image ids ``"<video>:<frame>"``)."""

    caption: str
    colour: str
    shape: str
    size: str  # "small" or "large"
    relevant: tuple[str, ...]


@dataclass(frozen=True)
class Library:
    root: Path  # holds videos/ and ground_truth.json
    spec: LibrarySpec
    queries: tuple[Query, ...]
    build_seconds: float = 0.0  # 0 when an existing library was reused

    @property
    def videos(self) -> Path:
        return self.root / "videos"

    @property
    def video_ids(self) -> list[int]:
        return sorted(int(p.name) for p in self.videos.iterdir() if p.name.isdigit())


# -- the needle library --------------------------------------------------------------------------


def _plan(spec: LibrarySpec) -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[tuple[str, tuple[str, str] | None]]]:
    """Queried small and large classes, and each frame's kind: ("small"|"large", class) for
    needles, ("filler", None) otherwise."""
    rng = np.random.default_rng([spec.seed, 0])
    order = [CLASSES[i] for i in rng.permutation(len(CLASSES))]
    small, large = order[: spec.small_captions], order[spec.small_captions : spec.small_captions + spec.large_captions]
    kinds: list[tuple[str, tuple[str, str] | None]] = [("filler", None)] * spec.frames
    slots = iter(rng.permutation(spec.frames))
    for size, classes in (("small", small), ("large", large)):
        for cls in classes:
            for _ in range(spec.needles):
                kinds[int(next(slots))] = (size, cls)
    return small, large, kinds


def _render(spec: LibrarySpec, index: int, kind: str, cls: tuple[str, str] | None, queried: frozenset[tuple[str, str]]) -> WorldFrame:
    rng = np.random.default_rng([spec.seed, 1, index])  # one stream per frame: any frame can be redrawn alone
    if kind == "small":
        return random_frame(spec.width, spec.height, rng, target=cls, exclude=queried)
    if kind == "large":
        return large_object_frame(spec.width, spec.height, rng, target=cls, exclude=queried)
    draw = rng.random()
    if draw < spec.filler_background:
        return background_frame(spec.width, spec.height, rng)
    if draw < spec.filler_background + spec.filler_large:
        return large_object_frame(spec.width, spec.height, rng, exclude=queried)
    return random_frame(spec.width, spec.height, rng, exclude=queried)


def _frame_path(videos: Path, spec: LibrarySpec, index: int) -> Path:
    video_id, frame_id = index // spec.frames_per_video + 1, index % spec.frames_per_video
    return videos / str(video_id) / f"frame_{frame_id:06d}.{spec.image_format}"


def image_id(spec: LibrarySpec, index: int) -> str:
    return f"{index // spec.frames_per_video + 1}:{index % spec.frames_per_video}"


def _write_frames(args: tuple[LibrarySpec, str, list[tuple[int, str, tuple[str, str] | None]], frozenset[tuple[str, str]]]) -> list[list]:
    """Render and save a batch of frames (runs in a worker process); their objects, as JSON rows."""
    spec, videos, batch, queried = args
    rows = []
    for index, kind, cls in batch:
        frame = _render(spec, index, kind, cls, queried)
        path = _frame_path(Path(videos), spec, index)
        options = {"quality": 95} if spec.image_format == "jpg" else {"compress_level": 1}
        Image.fromarray(frame.image).save(path, "JPEG" if spec.image_format == "jpg" else "PNG", **options)
        rows.append([[o.colour, o.shape, *o.box] for o in frame.objects])
    return rows


def build_library(root: Path, spec: LibrarySpec, workers: int = 1) -> Library:
    """Write the library under ``root`` (``videos/`` + ``ground_truth.json``), or reuse the one
    already there when it was built from the same spec."""
    truth_path = root / "ground_truth.json"
    if truth_path.is_file():
        truth = json.loads(truth_path.read_text())
        drawn = sum(1 for _ in (root / "videos").glob(f"*/frame_*.{spec.image_format}"))
        if truth.get("spec") == asdict(spec) and drawn == spec.frames:
            return Library(root, spec, tuple(Query(**{**q, "relevant": tuple(q["relevant"])}) for q in truth["queries"]))
    started = time.perf_counter()
    small, large, kinds = _plan(spec)
    queried = frozenset(small) | frozenset(large)
    videos = root / "videos"
    for index in range(0, spec.frames, spec.frames_per_video):
        _frame_path(videos, spec, index).parent.mkdir(parents=True, exist_ok=True)
    jobs = [(i, kind, cls) for i, (kind, cls) in enumerate(kinds)]
    batches = [(spec, str(videos), jobs[i : i + 50], queried) for i in range(0, len(jobs), 50)]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            objects = [row for rows in pool.map(_write_frames, batches) for row in rows]
    else:
        objects = [row for batch in batches for row in _write_frames(batch)]
    # Ground truth from what was drawn, not from the plan: a caption's relevant frames are every
    # frame holding an object of its class.
    queries = []
    for size, classes in (("small", small), ("large", large)):
        for colour, shape in classes:
            relevant = tuple(image_id(spec, i) for i, objs in enumerate(objects) if any(o[0] == colour and o[1] == shape for o in objs))
            planned = tuple(image_id(spec, i) for i, (_, cls) in enumerate(kinds) if cls == (colour, shape))
            assert relevant == planned, f"{colour} {shape}: drawn in {relevant}, planned {planned}"
            queries.append(Query(caption(colour, shape), colour, shape, size, relevant))
    truth = {
        "spec": asdict(spec),
        "about": "objects per frame: [colour, shape, x, y, w, h] (box in pixels); queries: caption -> relevant image ids",
        "queries": [asdict(q) for q in queries],
        "frames": {image_id(spec, i): objs for i, objs in enumerate(objects)},
    }
    truth_path.write_text(json.dumps(truth))
    return Library(root, spec, tuple(queries), time.perf_counter() - started)


def query_image(colour: str, shape: str, size: int = 224, seed: int = 0) -> bytes:
    """The hybrid query's image: the target object alone (radius 30% of the image) on a world
    background, as PNG."""
    side = round(0.6 * size)
    obj = WorldObject(colour, shape, ((size - side) // 2, (size - side) // 2, side, side))
    buffer = io.BytesIO()
    Image.fromarray(render_frame(size, size, (obj,), seed).image).save(buffer, "PNG")
    return buffer.getvalue()


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
    from assets.videos import ASSETS, videos_partitions
    from resources.dagster_resources import CheckpointStoreResource, EncoderResource, FrameSourceResource, FramesS3Resource, IndexResource

    resources = {  # the code location's resources (pipelines/definitions.py), pointed at this library
        "encoder": EncoderResource(model=model, pretrained=pretrained),
        "frames": FrameSourceResource(root=str(library.videos), fps=25.0, s3=FramesS3Resource()),
        "store": CheckpointStoreResource(root=str(work / "checkpoints")),
        "index": IndexResource(path=str(work / "qdrant"), collection=COLLECTION),
    }
    instance = dg.DagsterInstance.ephemeral()
    keys = [str(v) for v in library.video_ids]
    instance.add_dynamic_partitions(videos_partitions.name, keys)
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
                yield base
    finally:
        moto.stop()


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


def exhaustive_rankings(checkpoints: Path, query_vectors: np.ndarray, top_k: int = K) -> list[list[str]]:
    """Per query, the ``top_k`` frames by max cosine between its text vector and the frame's
    stored patch vectors, over every frame of every checkpoint in ``checkpoints``."""
    from resources.checkpoints.format import vectors

    dim = query_vectors.shape[1]
    ids: list[str] = []
    scores: list[np.ndarray] = []
    for path in sorted(checkpoints.glob("video_*.parquet")):
        table = pq.read_table(path, columns=["video_id", "frame_id", "patch_vectors"])
        patches = table.column("patch_vectors").combine_chunks()
        flat = vectors(patches.flatten(), dim)  # (patches, dim)
        lengths = np.asarray(patches.value_lengths())  # (frames,)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        sims = flat @ query_vectors.T  # (patches, queries)
        scores.append(np.maximum.reduceat(sims, starts, axis=0))  # (frames, queries): best patch per frame
        ids += [f"{v}:{f}" for v, f in zip(table.column("video_id").to_pylist(), table.column("frame_id").to_pylist())]
    table_scores = np.concatenate(scores)  # (frames, queries)
    order = np.argsort(-table_scores, axis=0, kind="stable")[:top_k]  # (top_k, queries)
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
