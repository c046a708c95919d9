"""HTTP handlers. Each parses and validates its request, runs the blocking search in a worker
thread (the event loop keeps answering health checks and other queries meanwhile) and shapes
the seed's response."""

from __future__ import annotations

import re
import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from search_service.errors import HTTPProblem
from search_service.metrics import record_stages
from search_service.moments import group_moments
from search_service.request_bodies import json_body, validate_body
from search_service.schemas import MAX_VIDEO_IDS, HybridSearch, HybridUpload, ImageSearch, RankFields, SearchResponse, TextSearch, UploadSearch
from search_service.search import IndexedFrame, hybrid_search, image_search, similar_search, text_search, to_results
from search_service.state import ServiceState, service_state


def _respond(state: ServiceState, started: float, hits: list, stages: dict[str, float], query_type: str, rerank: bool, request: RankFields | None = None) -> JSONResponse:
    results = to_results(hits)
    moments = None
    if request is not None and request.group_by == "moments":  # the top_k hits, merged per video
        moments = group_moments(results, request.moment_gap_ms, request.moments_per_video)
    body = SearchResponse(
        results=results, total=len(results), query_type=query_type, rerank_enabled=rerank,  # type: ignore[arg-type]
        duration_ms=round((time.perf_counter() - started) * 1000, 3), durations_ms=stages, moments=moments,
    )
    return JSONResponse(body.model_dump())


async def search_text(request: Request) -> JSONResponse:
    started = time.perf_counter()
    state = service_state(request)
    body: TextSearch = await json_body(request, TextSearch)
    hits, stages = await run_in_threadpool(text_search, state.searcher(), body.query, body)
    record_stages(request, stages)
    return _respond(state, started, hits, stages, "text", body.rerank, body)


async def _fetch(state: ServiceState, url: str) -> tuple[bytes, dict[str, float]]:
    """The query image at ``url`` and the time its download took."""
    began = time.perf_counter()
    data = await run_in_threadpool(state.fetcher.fetch, url)
    return data, {"fetch": round((time.perf_counter() - began) * 1000, 3)}


async def search_image(request: Request) -> JSONResponse:
    started = time.perf_counter()
    state = service_state(request)
    body: ImageSearch = await json_body(request, ImageSearch)
    searcher = state.searcher()
    if body.image_id is not None:  # "more like this": an indexed frame's own vectors
        hits, stages = await run_in_threadpool(similar_search, searcher, IndexedFrame(body.image_id), body)
        record_stages(request, stages)
        return _respond(state, started, hits, stages, "image", body.rerank, body)
    assert body.s3_url is not None  # the model requires exactly one of image_id and s3_url
    data, fetch_ms = await _fetch(state, body.s3_url)
    hits, stages = await run_in_threadpool(image_search, searcher, data, body)
    record_stages(request, {**fetch_ms, **stages})
    return _respond(state, started, hits, {**fetch_ms, **stages}, "image", body.rerank, body)


# A form carries video_ids as repeated fields (or "1,2"): as many as the JSON routes take, besides
# the file and the other parameters.
MAX_FORM_FIELDS = MAX_VIDEO_IDS + 32


def form_value(text: str) -> str | None:
    """A form field's text as the JSON routes would read it: empty or ``null`` is JSON's null (a
    nullable field left out; any other field refuses it with 422, as a JSON body's null is), and an
    integral number in exponent form (``1e+16``, as clients print large floats) its digits."""
    if text in ("", "null"):
        return None
    if _EXPONENT.match(text):
        number = float(text)
        if number.is_integer():
            return str(int(number))
    return text


_EXPONENT = re.compile(r"^[+-]?[0-9]+(?:\.[0-9]*)?[eE][+-]?[0-9]+$")


async def _upload(request: Request, state: ServiceState) -> tuple[bytes, dict[str, Any]]:
    """The uploaded file's bytes and the other parameters (form fields over the query string)."""
    limit = state.settings.max_upload_bytes
    # The RequestGuard has refused bodies over the limit plus the form's overhead, declared or
    # streamed; a file between the two is caught below.
    async with request.form(max_files=1, max_fields=MAX_FORM_FIELDS, max_part_size=limit) as form:
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise HTTPProblem(422, [{"loc": ["body", "file"], "msg": "a multipart file field named 'file' is required", "type": "missing"}])
        data = await upload.read(limit + 1)
        fields = [(k, v) for k, v in form.multi_items() if k != "file" and isinstance(v, str)]
    if len(data) > limit:
        raise HTTPProblem(413, f"upload is over the limit of {limit:,} bytes (MAX_UPLOAD_BYTES)")
    params: dict[str, Any] = {}
    for source in (list(request.query_params.multi_items()), fields):  # form fields win
        ids = [text for name, text in source if name == "video_ids"]
        if len(ids) == 1 and form_value(ids[0]) is None:
            params["video_ids"] = None
        elif ids:  # repeated fields, or "1,2"
            params["video_ids"] = [part.strip() for text in ids for part in text.split(",") if part.strip()]
        for name, text in source:  # a repeated field: the last one wins, as in a JSON object
            if name != "video_ids":
                params[name] = form_value(text)
    return data, params


async def search_image_upload(request: Request) -> JSONResponse:
    started = time.perf_counter()
    state = service_state(request)
    searcher = state.searcher()
    data, params = await _upload(request, state)
    body: UploadSearch = validate_body(UploadSearch, params)
    hits, stages = await run_in_threadpool(image_search, searcher, data, body)
    record_stages(request, stages)
    return _respond(state, started, hits, stages, "image", body.rerank, body)


async def search_hybrid_upload(request: Request) -> JSONResponse:
    """Text and an uploaded image fused, as ``/search/hybrid`` fuses text and an S3 image."""
    started = time.perf_counter()
    state = service_state(request)
    searcher = state.searcher()
    data, params = await _upload(request, state)
    body: HybridUpload = validate_body(HybridUpload, params)
    hits, stages = await run_in_threadpool(
        hybrid_search, searcher, body.text_query, data, body.text_weight, body.image_weight, body
    )
    record_stages(request, stages)
    return _respond(state, started, hits, stages, "hybrid", body.rerank, body)


async def search_hybrid(request: Request) -> JSONResponse:
    started = time.perf_counter()
    state = service_state(request)
    body: HybridSearch = await json_body(request, HybridSearch)
    searcher = state.searcher()
    image: bytes | IndexedFrame
    fetch_ms: dict[str, float] = {}
    if body.image_id is not None:
        image = IndexedFrame(body.image_id)
    else:
        assert body.image_s3_url is not None  # the model requires exactly one of image_id and image_s3_url
        image, fetch_ms = await _fetch(state, body.image_s3_url)
    hits, stages = await run_in_threadpool(
        hybrid_search, searcher, body.text_query, image, body.text_weight, body.image_weight, body
    )
    record_stages(request, {**fetch_ms, **stages})
    return _respond(state, started, hits, {**fetch_ms, **stages}, "hybrid", body.rerank, body)


async def healthz(request: Request) -> JSONResponse:
    """200 with a summary when the model and the index are ready, else 503. Runs no model."""
    state = service_state(request)
    body = state.health()
    return JSONResponse(body, status_code=200 if body["ok"] else 503)
