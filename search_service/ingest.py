"""The seed's ingest endpoints, as a thin front to Dagster runs.

``POST /ingest/frames(/async)`` records the items in each video's manifest (at FRAMES_ROOT),
registers the ``videos`` partitions and launches one ``video_pipeline`` run per video through
the Dagster GraphQL API of DAGSTER_URL. A job is the runs tagged with its id; ``GET /jobs``
reads them back from Dagster and reports them in the seed's job schema. ``/ingest/frame`` and
``/ingest/frames`` wait (at most INGEST_WAIT_S) for the runs and for the frames to be searchable.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Collection
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from resources.frame_sources import FrameRef, FrameSourceError
from resources.s3.urls import S3UrlError, S3UrlNotAllowed, parse_allowed_s3_url
from resources.vector_index.schema import image_id, point_id
from search_service.dagster_api import ANY_JOB_TAG, FRAMES_TAG, JOB_TAG, PARTITION_TAG, RunInfo
from search_service.errors import HTTPProblem
from search_service.redaction import Redactor
from search_service.request_bodies import json_body, query_param
from search_service.schemas import JOB_STATUS, JOBS_LIMIT, IngestBatch, IngestItem
from search_service.state import service_state

PENDING = {"QUEUED", "NOT_STARTED", "STARTING", "MANAGED"}
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


def compact_ids(ids: list[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3,7"``: frame ids fit a run tag."""
    parts, ids = [], sorted(ids)
    start = prev = ids[0]
    for value in [*ids[1:], None]:
        if value is not None and value == prev + 1:
            prev = value
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if value is not None:
            start = prev = value
    return ",".join(parts)


def expand_ids(text: str) -> list[int]:
    out: list[int] = []
    for part in filter(None, text.split(",")):
        low, _, high = part.partition("-")
        out.extend(range(int(low), int(high or low) + 1))
    return out


def _submit(request: Request, items: list[IngestItem], single: bool = False) -> str:
    """Record the frames, register the partitions and launch the runs; return the job id."""
    state = service_state(request)
    endpoint, allowed = state.s3_endpoint, state.settings.allowed_locations()
    for number, item in enumerate(items):
        # The same check as query images: an S3 URL, no escapes, inside ALLOWED_S3_PREFIXES. The
        # pipeline reads what the manifest says with the service's credentials, so a URL refused
        # for search must not get in through ingest.
        try:
            parse_allowed_s3_url(item.s3_url, endpoint, allowed)
        except S3UrlNotAllowed as exc:  # a well-formed URL this service may not read, as for query images
            raise HTTPProblem(403, str(exc)) from None
        except S3UrlError as exc:
            loc = ["body", "s3_url"] if single else ["body", "items", str(number), "s3_url"]
            raise HTTPProblem(422, [{"loc": loc, "msg": str(exc), "type": "value_error"}]) from None
    state.dagster.check()  # no side effects (manifests) unless runs can be launched
    latest = {(item.video_id, item.frame_id): item for item in items}  # a frame listed twice: its last item
    by_video: dict[int, list[FrameRef]] = defaultdict(list)
    for item in latest.values():
        by_video[item.video_id].append(FrameRef(item.frame_id, item.timestamp_ms, item.s3_url))
    source = state.frame_source()
    try:
        for video_id, refs in by_video.items():
            source.record_frames(video_id, refs)
    except FrameSourceError as exc:
        raise HTTPProblem(400, f"cannot record the frames: {state.redact(str(exc))}") from exc
    job_id = str(uuid.uuid4())
    keys = [str(v) for v in sorted(by_video)]
    state.dagster.add_partitions("videos", keys)
    for key in keys:
        frames = compact_ids([ref.frame_id for ref in by_video[int(key)]])
        state.dagster.launch("video_pipeline", {PARTITION_TAG: key, JOB_TAG: job_id, ANY_JOB_TAG: "1", FRAMES_TAG: frames})
    return job_id


def _skipped(run: RunInfo) -> dict[str, str]:
    return (run.metadata.get("frame_embeddings") or {}).get("skipped") or {}


def reported_ok(runs: list[RunInfo]) -> list[str]:
    """Point ids of the frames the runs report as embedded: to be looked up in the index."""
    return [
        point_id(int(run.tags[PARTITION_TAG]), frame_id)
        for run in runs if run.status == "SUCCESS"
        for frame_id in expand_ids(run.tags.get(FRAMES_TAG, "")) if str(frame_id) not in _skipped(run)
    ]


PATHS_ONLY = Redactor()  # absolute paths and file:// URIs; the service passes one that knows its settings


def job_view(
    job_id: str, runs: list[RunInfo], indexed: Collection[str], *, now: float, index_lag_s: float = 0.0, redact: Callable[[str], str] = PATHS_ONLY,
) -> dict[str, Any]:
    """The seed's job schema from the job's Dagster runs.

    A frame is ok only when its run succeeded, did not skip it, and it is in the index
    (``indexed``: the point ids of :func:`reported_ok` that the index holds). A frame missing from
    the index is pending for ``index_lag_s`` after its run ended (an embedded index applies
    checkpoints a moment later), then failed: it was removed or replaced since. The pipeline's
    failure and skip reasons pass through ``redact`` (server paths and endpoints out).
    """
    results, statuses = [], [r.status for r in runs]
    for run in runs:
        video_id = int(run.tags[PARTITION_TAG])
        skipped = _skipped(run)
        for frame_id in expand_ids(run.tags.get(FRAMES_TAG, "")):
            ok: bool | None
            error: str | None = None
            if run.status not in FINISHED:
                ok = None
            elif run.status != "SUCCESS":
                ok, error = False, f"run {run.run_id} {run.status.lower()}: {redact(run.failure or 'Dagster recorded no reason')}"
            elif str(frame_id) in skipped:
                ok, error = False, redact(str(skipped[str(frame_id)]))
            elif point_id(video_id, frame_id) in indexed:
                ok = True
            elif run.end_time is not None and now - run.end_time < index_lag_s:
                ok = None  # the follower has not applied the checkpoint yet
            else:
                ok, error = False, f"run {run.run_id} succeeded but the frame is not in the index (removed or replaced since)"
            results.append({
                "video_id": video_id, "frame_id": frame_id, "image_id": image_id(video_id, frame_id),
                "ok": ok, "error": error, "run_id": run.run_id,
            })
    if all(s in PENDING for s in statuses):
        status = "pending"
    elif all(s in FINISHED for s in statuses) and all(r["ok"] is not None for r in results):
        status = "completed" if all(s == "SUCCESS" for s in statuses) else "failed"
    else:
        status = "running"
    starts = [r.start_time for r in runs if r.start_time]
    ends = [r.end_time for r in runs if r.end_time]
    finished = [r for r in results if r["ok"] is not None]
    failures = [
        f"run {r.run_id} for video {r.tags[PARTITION_TAG]}: {r.status.lower()}: {redact(r.failure or 'Dagster recorded no reason')}"
        for r in runs if r.status in ("FAILURE", "CANCELED")
    ]
    return {
        "job_id": job_id,
        "status": status,
        "error": "; ".join(failures) or None,
        "total_items": len(results),
        "processed_items": len(finished),
        "successful_items": sum(1 for r in finished if r["ok"]),
        "failed_items": sum(1 for r in finished if not r["ok"]),
        "results": sorted(results, key=lambda r: (r["video_id"], r["frame_id"])),
        "duration_seconds": round(max(ends) - min(starts), 3) if starts and ends and status in ("completed", "failed") else None,
        "runs": [{"run_id": r.run_id, "video_id": int(r.tags[PARTITION_TAG]), "status": r.status} for r in runs],
    }


async def _views(request: Request, jobs: dict[str, list[RunInfo]]) -> tuple[list[dict[str, Any]], dict[str, dict]]:
    """Job views checked against the index, and the payloads of the frames it holds."""
    state = service_state(request)
    wanted = [pid for runs in jobs.values() for pid in reported_ok(runs)]
    searcher = state.searcher()  # IndexNotReady (503) when the index is not open: nothing to verify against
    payloads = await run_in_threadpool(searcher.index.payloads, wanted) if wanted else {}
    lag = 5 * state.settings.follow_interval_s + 5 if searcher.index.mode == "embedded" else 0.0
    now = time.time()
    return [job_view(job_id, runs, payloads.keys(), now=now, index_lag_s=lag, redact=state.redact) for job_id, runs in jobs.items()], payloads


async def _wait(request: Request, job_id: str, items: list[IngestItem]) -> dict[str, Any] | None:
    """Wait until the job ends and its frames are searchable (or known lost); None after INGEST_WAIT_S."""
    state = service_state(request)
    deadline = time.monotonic() + state.settings.ingest_wait_s
    while time.monotonic() < deadline:
        runs = await run_in_threadpool(state.dagster.runs, JOB_TAG, job_id)
        [view], payloads = await _views(request, {job_id: runs})
        if view["status"] in ("completed", "failed"):
            view["payloads"] = payloads
            return view
        await asyncio.sleep(0.5)
    return None


def _item_result(item: IngestItem, view: dict[str, Any]) -> dict[str, Any]:
    match = next(r for r in view["results"] if r["video_id"] == item.video_id and r["frame_id"] == item.frame_id)
    payload = view["payloads"].get(point_id(item.video_id, item.frame_id)) or {}
    out = {"s3_url": item.s3_url, "video_id": item.video_id, "frame_id": item.frame_id, "ok": bool(match["ok"])}
    if match["ok"]:
        out.update(image_id=match["image_id"], num_patches=len(payload.get("patch_boxes") or []))
    else:
        out["error"] = match["error"]
    return out


async def ingest_frames(request: Request) -> JSONResponse:
    started = time.perf_counter()
    body: IngestBatch = await json_body(request, IngestBatch)
    job_id = await run_in_threadpool(_submit, request, body.items)
    view = await _wait(request, job_id, body.items)
    if view is None:
        return JSONResponse({"job_id": job_id, "status": "running", "message": f"not finished within INGEST_WAIT_S; GET /jobs/{job_id}"}, status_code=202)
    results = [_item_result(item, view) for item in body.items]
    return JSONResponse({
        "total": len(results), "successful": sum(r["ok"] for r in results), "failed": sum(not r["ok"] for r in results),
        "results": results, "total_duration_ms": round((time.perf_counter() - started) * 1000, 1), "job_id": job_id,
    })


async def ingest_frame(request: Request) -> JSONResponse:
    started = time.perf_counter()
    item: IngestItem = await json_body(request, IngestItem)
    job_id = await run_in_threadpool(_submit, request, [item], True)
    view = await _wait(request, job_id, [item])
    if view is None:
        return JSONResponse({"job_id": job_id, "status": "running", "message": f"not finished within INGEST_WAIT_S; GET /jobs/{job_id}"}, status_code=202)
    result = _item_result(item, view)
    if not result["ok"]:
        raise HTTPProblem(422, f"frame {item.video_id}:{item.frame_id} was not ingested: {result['error']}")
    state = service_state(request)
    runs = await run_in_threadpool(state.dagster.runs, JOB_TAG, job_id)
    stages = (runs[0].metadata.get("frame_embeddings") or {}).get("seconds") or {}
    sync = runs[0].metadata.get("index_sync") or {}
    dim = state.encoder.info.embed_dim
    return JSONResponse({
        "image_id": result["image_id"], "video_id": item.video_id, "frame_id": item.frame_id,
        "global_dim": dim, "num_patches": result["num_patches"], "patch_dim": dim,
        "durations_ms": {  # the video's stages (this run had one frame unless the video had more)
            "fetch": round(stages.get("fetch", 0) * 1000, 1), "image_open": round(stages.get("decode", 0) * 1000, 1),
            "patch_plan": round(stages.get("patch_plan", 0) * 1000, 1), "embed": round(stages.get("embed", 0) * 1000, 1),
            "write": round(stages.get("write", 0) * 1000, 1), "qdrant_upsert": round((sync.get("seconds") or 0) * 1000, 1),
            "total": round((time.perf_counter() - started) * 1000, 1),
        },
        "stored_multivector": True, "job_id": job_id,
    })


async def ingest_frames_async(request: Request) -> JSONResponse:
    body: IngestBatch = await json_body(request, IngestBatch)
    job_id = await run_in_threadpool(_submit, request, body.items)
    return JSONResponse({
        "job_id": job_id, "status": "pending", "total_items": len(body.items),
        "message": f"Job started. Use GET /jobs/{job_id} to check status.",
    }, status_code=202)


async def get_job(request: Request) -> JSONResponse:
    state = service_state(request)
    job_id = request.path_params["job_id"]
    runs = await run_in_threadpool(state.dagster.runs, JOB_TAG, job_id)
    if not runs:
        raise HTTPProblem(404, f"no ingest job {job_id}")
    [view], _ = await _views(request, {job_id: runs})
    return JSONResponse(view)


async def list_jobs(request: Request) -> JSONResponse:
    state = service_state(request)
    limit = query_param(request, "limit", JOBS_LIMIT) or 20
    wanted = query_param(request, "status", JOB_STATUS)
    runs = await run_in_threadpool(state.dagster.runs, ANY_JOB_TAG, "1", 20 * limit)
    by_job: dict[str, list[RunInfo]] = defaultdict(list)
    for run in runs:
        by_job[run.tags[JOB_TAG]].append(run)
    views, _ = await _views(request, dict(by_job))
    views = [v for v in views if wanted is None or v["status"] == wanted]
    return JSONResponse({"jobs": [{k: v for k, v in view.items() if k != "results"} for view in views[:limit]], "total": len(views[:limit])})
