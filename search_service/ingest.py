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
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from resources.frame_sources import FrameRef, FrameSourceError
from resources.index_schema import image_id, point_id
from resources.s3_urls import is_s3_host
from search_service.dagster_api import ANY_JOB_TAG, FRAMES_TAG, JOB_TAG, PARTITION_TAG, RunInfo
from search_service.routes import HTTPProblem, _json_body, _state
from search_service.schemas import IngestBatch, IngestItem

PENDING = {"QUEUED", "NOT_STARTED", "STARTING", "MANAGED"}
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


def compact_ids(ids: list[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3,7"``: frame ids fit a run tag."""
    parts, ids = [], sorted(ids)
    start = prev = ids[0]
    for value in ids[1:] + [None]:  # type: ignore[list-item]
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


def _submit(request: Request, items: list[IngestItem]) -> str:
    """Record the frames, register the partitions and launch the runs; return the job id."""
    state = _state(request)
    state.dagster.check()  # no side effects (manifests) unless runs can be launched
    endpoint = state.s3_endpoint
    for number, item in enumerate(items):
        if not is_s3_host(item.s3_url, endpoint):
            raise HTTPProblem(422, [{"loc": ["body", "items", str(number), "s3_url"], "msg": "not an S3 URL (s3://, an AWS S3 host or S3_ENDPOINT_URL)", "type": "value_error"}])
    by_video: dict[int, list[FrameRef]] = defaultdict(list)
    for item in items:
        by_video[item.video_id].append(FrameRef(item.frame_id, item.timestamp_ms, item.s3_url))
    source = state.frame_source()
    try:
        for video_id, refs in by_video.items():
            source.record_frames(video_id, refs)
    except FrameSourceError as exc:
        raise HTTPProblem(400, f"cannot record the frames: {exc}") from exc
    job_id = str(uuid.uuid4())
    keys = [str(v) for v in sorted(by_video)]
    state.dagster.add_partitions("videos", keys)
    for key in keys:
        frames = compact_ids([ref.frame_id for ref in by_video[int(key)]])
        state.dagster.launch("video_pipeline", {PARTITION_TAG: key, JOB_TAG: job_id, ANY_JOB_TAG: "1", FRAMES_TAG: frames})
    return job_id


def job_view(job_id: str, runs: list[RunInfo]) -> dict[str, Any]:
    """The seed's job schema from the job's Dagster runs."""
    results, statuses = [], [r.status for r in runs]
    for run in runs:
        video_id = int(run.tags[PARTITION_TAG])
        skipped = (run.metadata.get("frame_embeddings") or {}).get("skipped") or {}
        for frame_id in expand_ids(run.tags.get(FRAMES_TAG, "")):
            done = run.status in FINISHED
            ok = run.status == "SUCCESS" and str(frame_id) not in skipped
            error = skipped.get(str(frame_id)) or (None if ok or not done else f"run {run.run_id} {run.status.lower()}")
            results.append({
                "video_id": video_id, "frame_id": frame_id, "image_id": image_id(video_id, frame_id),
                "ok": ok if done else None, "error": error, "run_id": run.run_id,
            })
    if all(s in PENDING for s in statuses):
        status = "pending"
    elif all(s in FINISHED for s in statuses):
        status = "completed" if all(s == "SUCCESS" for s in statuses) else "failed"
    else:
        status = "running"
    starts = [r.start_time for r in runs if r.start_time]
    ends = [r.end_time for r in runs if r.end_time]
    finished = [r for r in results if r["ok"] is not None]
    failures = [f"run {r.run_id} for video {r.tags[PARTITION_TAG]}: {r.status.lower()}" for r in runs if r.status in ("FAILURE", "CANCELED")]
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


async def _wait(request: Request, job_id: str, items: list[IngestItem]) -> dict[str, Any] | None:
    """Wait until the job ends and its good frames are searchable; None after INGEST_WAIT_S."""
    state = _state(request)
    deadline = time.monotonic() + state.settings.ingest_wait_s
    while time.monotonic() < deadline:
        view = job_view(job_id, await run_in_threadpool(state.dagster.runs, JOB_TAG, job_id))
        if view["status"] in ("completed", "failed"):
            wanted = [point_id(r["video_id"], r["frame_id"]) for r in view["results"] if r["ok"]]
            # In embedded mode this service's follower applies the checkpoint a moment later.
            payloads = await run_in_threadpool(state.searcher().index.payloads, wanted)
            if len(payloads) == len(wanted):
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
    body: IngestBatch = await _json_body(request, IngestBatch)
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
    item: IngestItem = await _json_body(request, IngestItem)
    job_id = await run_in_threadpool(_submit, request, [item])
    view = await _wait(request, job_id, [item])
    if view is None:
        return JSONResponse({"job_id": job_id, "status": "running", "message": f"not finished within INGEST_WAIT_S; GET /jobs/{job_id}"}, status_code=202)
    result = _item_result(item, view)
    if not result["ok"]:
        raise HTTPProblem(422, f"frame {item.video_id}:{item.frame_id} was not ingested: {result['error']}")
    state = _state(request)
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
    body: IngestBatch = await _json_body(request, IngestBatch)
    job_id = await run_in_threadpool(_submit, request, body.items)
    return JSONResponse({
        "job_id": job_id, "status": "pending", "total_items": len(body.items),
        "message": f"Job started. Use GET /jobs/{job_id} to check status.",
    }, status_code=202)


async def get_job(request: Request) -> JSONResponse:
    state = _state(request)
    job_id = request.path_params["job_id"]
    runs = await run_in_threadpool(state.dagster.runs, JOB_TAG, job_id)
    if not runs:
        raise HTTPProblem(404, f"no ingest job {job_id}")
    return JSONResponse(job_view(job_id, runs))


async def list_jobs(request: Request) -> JSONResponse:
    state = _state(request)
    try:
        limit = int(request.query_params.get("limit", "20"))
    except ValueError:
        raise HTTPProblem(422, [{"loc": ["query", "limit"], "msg": "limit must be an integer", "type": "int_parsing"}]) from None
    if not 1 <= limit <= 200:
        raise HTTPProblem(422, [{"loc": ["query", "limit"], "msg": "limit must be between 1 and 200", "type": "value_error"}])
    wanted = request.query_params.get("status")
    if wanted not in (None, "pending", "running", "completed", "failed"):
        raise HTTPProblem(422, [{"loc": ["query", "status"], "msg": "status must be pending, running, completed or failed", "type": "value_error"}])
    runs = await run_in_threadpool(state.dagster.runs, ANY_JOB_TAG, "1", 20 * limit)
    by_job: dict[str, list[RunInfo]] = defaultdict(list)
    for run in runs:
        by_job[run.tags[JOB_TAG]].append(run)
    views = [job_view(job_id, job_runs) for job_id, job_runs in by_job.items()]
    views = [v for v in views if wanted is None or v["status"] == wanted]
    return JSONResponse({"jobs": [{k: v for k, v in view.items() if k != "results"} for view in views[:limit]], "total": len(views[:limit])})
