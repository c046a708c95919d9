"""The OpenAPI 3.1 description of the service, built from the same pydantic models and type
adapters that validate the requests, so the document states exactly what the handlers accept
(bounds, patterns, the rules across fields) and cannot drift from the code.

The document describes the deployment as configured: with ``SEARCH_API_KEY`` set every operation
but ``/healthz`` requires the ``apiKey`` scheme, and the ingest and job routes are listed only
when ``DAGSTER_URL`` is set (without it they answer 503: there is nothing to ingest through).
``schemathesis run <base>/openapi.json --checks all`` checks the service against it (README, API).
"""

from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, TypeAdapter

from search_service.schemas import (
    BOX,
    FRAME_SIZE,
    IMAGE_ID_PATTERN,
    JOB_STATUS,
    JOBS_LIMIT,
    HybridSearch,
    HybridUpload,
    ImageSearch,
    IngestBatch,
    IngestItem,
    SearchResponse,
    TextSearch,
    UploadSearch,
)

# The image formats an upload's file part is read as (what Pillow opens; any other bytes are a 400).
# The part's own Content-Type is not consulted, so the document names the formats in words rather
# than as the part's `encoding.contentType`.
IMAGE_FORMATS = "PNG, JPEG, GIF, WebP, BMP or TIFF"

PROBLEM = {
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {
            "description": "what went wrong: a sentence, or (422) one entry per invalid field",
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "object", "required": ["loc", "msg", "type"], "properties": {
                    "loc": {"type": "array", "items": {"type": "string"}}, "msg": {"type": "string"}, "type": {"type": "string"},
                }}},
            ],
        },
    },
}

ERRORS = {
    "400": "the body is not JSON (or not a JSON object), or the query image is not an image this service decodes",
    "401": "missing or wrong X-API-Key (SEARCH_API_KEY is set)",
    "403": "the S3 URL is well formed but outside the locations this service reads (ALLOWED_S3_PREFIXES)",
    "404": "the query image's S3 object does not exist, or image_id names no indexed frame",
    "408": "the request body did not arrive within BODY_TIMEOUT_S",
    "413": "the body, query image or upload is over its size or pixel limit",
    "422": "a field is missing, of the wrong type or out of range; detail names each one",
    "502": "S3 refused or failed to serve the query image",
    "503": "the index is not open yet (or held by another process); retry after Retry-After",
}


def _problems(*codes: str, **texts: str) -> dict[str, Any]:
    """Error responses with the problem body: ``codes`` described as in :data:`ERRORS`, or by ``texts`` (``_404=...``)."""
    out: dict[str, dict[str, Any]] = {code: {"description": ERRORS[code]} for code in codes}
    out.update({name.lstrip("_"): {"description": text} for name, text in texts.items()})
    for response in out.values():
        response["content"] = {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    return out


def _json_body(model: type[BaseModel]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}


def _search(summary: str, body: dict[str, Any], errors: dict[str, Any]) -> dict[str, Any]:
    return {"post": {
        "summary": summary,
        "requestBody": body,
        "responses": {"200": {"description": "ranked frames", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SearchResponse"}}}}, **errors},
    }}


def _upload_body(schema: dict[str, Any]) -> dict[str, Any]:
    """A multipart form: the file part and the model's fields (the model's own rules included)."""
    fields = copy.deepcopy(schema)
    # OpenAPI 3.1 spells a file part as contentMediaType (format: binary is 3.0's spelling).
    file = {"type": "string", "contentMediaType": "application/octet-stream", "description": f"the query image: {IMAGE_FORMATS} bytes"}
    fields["properties"] = {"file": file, **fields["properties"]}
    fields["required"] = ["file", *fields.get("required", [])]
    return {"required": True, "content": {"multipart/form-data": {"schema": fields}}}


def _ingest(summary: str, model: type[BaseModel]) -> dict[str, Any]:
    return {"post": {
        "summary": summary,
        "requestBody": _json_body(model),
        "responses": {
            "200": {"description": "done (the seed's response fields)"},
            "202": {"description": "started, or still running after INGEST_WAIT_S: poll GET /jobs/{job_id}"},
            **_problems("400", "403", "408", "413", _422="a field is invalid, or the frame could not be ingested",
                        _503="the dagster-webserver at DAGSTER_URL does not answer"),
        },
    }}


def _query(name: str, adapter: TypeAdapter[Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": adapter.json_schema(), "description": description}


FRAMES: dict[str, Any] = {"get": {
    "summary": "The picture of an indexed frame as a JPEG (only frames in the index; never a client path)",
    "parameters": [
        {"name": "image_id", "in": "path", "required": True, "schema": {"type": "string", "pattern": IMAGE_ID_PATTERN}, "description": '"<video_id>:<frame_id>"'},
        _query("size", FRAME_SIZE, "longer side at most this many pixels"),
        _query("box", BOX, "x,y,w,h in frame pixels to draw (e.g. a result's best_patch_box)"),
        {"name": "v", "in": "query", "required": False, "schema": {"type": "string"}, "description": "checkpoint version (thumbnail_url sets it): the answer is immutable while it is current"},
    ],
    "responses": {
        "200": {"description": "the frame", "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}},
        "304": {"description": "not modified (If-None-Match matched the ETag)"},
        **_problems("422", _404="no such frame in the index, or its file or object is gone",
                    _501="the frame lies in a video file this build cannot decode", _502="the frame's file or object could not be read",
                    _503=ERRORS["503"]),
    },
}}

JOBS: dict[str, Any] = {
    "/jobs": {"get": {
        "summary": "Recent ingest jobs",
        "parameters": [_query("limit", JOBS_LIMIT, "at most this many jobs (default 20)"), _query("status", JOB_STATUS, "only jobs in this state")],
        "responses": {"200": {"description": "jobs"}, **_problems("422", _503="the dagster-webserver at DAGSTER_URL does not answer")},
    }},
    "/jobs/{job_id}": {"get": {
        "summary": "One ingest job in the seed's job schema",
        "parameters": [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {"200": {"description": "the job"}, **_problems(_404="no such job", _503="the dagster-webserver at DAGSTER_URL does not answer")},
    }},
}


@lru_cache(maxsize=4)
def openapi_document(api_key: bool = False, ingest: bool = True) -> dict[str, Any]:
    """The document for a deployment with (``api_key``) or without an API key, and with or without
    the ingest routes (``ingest``: DAGSTER_URL is set)."""
    schemas: dict[str, Any] = {"Problem": PROBLEM}
    for model in (TextSearch, ImageSearch, HybridSearch, UploadSearch, HybridUpload, SearchResponse, IngestItem, IngestBatch):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    json_errors = _problems("400", "403", "404", "408", "413", "422", "502", "503")
    upload_errors = _problems("400", "408", "413", "422", "503")
    paths: dict[str, Any] = {
        "/healthz": {"get": {"summary": "Readiness: 200 with a config summary when the model and index are ready, else 503",
                             "security": [],  # open: load balancers probe it without the key
                             "responses": {"200": {"description": "ready"}, "503": {"description": "not ready; index_error says why"}}}},
        "/search/text": _search("Search frames by text", _json_body(TextSearch), json_errors),
        "/search/image": _search("Search frames by an image at an S3 URL, or by an indexed frame (image_id: more like this)", _json_body(ImageSearch), json_errors),
        "/search/image/upload": _search("Search by an uploaded image (multipart; parameters as form fields or query string)",
                                        _upload_body(schemas["UploadSearch"]), upload_errors),
        "/search/hybrid": _search("Fuse a text and an image query (image by S3 URL or indexed image_id)", _json_body(HybridSearch), json_errors),
        "/search/hybrid/upload": _search("Fuse a text query and an uploaded image (multipart; parameters as form fields or query string)",
                                         _upload_body(schemas["HybridUpload"]), upload_errors),
        "/frames/{image_id}": FRAMES,
    }
    if ingest:
        paths.update({
            "/ingest/frame": _ingest("Ingest one frame through a Dagster run and wait for it", IngestItem),
            "/ingest/frames": _ingest("Ingest frames through Dagster runs and wait for them", IngestBatch),
            "/ingest/frames/async": _ingest("Start ingesting frames; poll GET /jobs/{job_id}", IngestBatch),
            **JOBS,
        })
    paths = copy.deepcopy(paths)
    if api_key:
        for path, item in paths.items():
            for operation in item.values():
                if path != "/healthz":
                    operation["responses"].update(_problems("401"))
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "framesearch search service", "version": "0.1.0",
                 "description": "Text, image and hybrid search over video frames, with patch-level MaxSim rerank. "
                                "Every search takes group_by=\"moments\" to also answer with moments: a video's hits among the "
                                "top_k at most moment_gap_ms apart merged into {video_id, start_ms, end_ms, best, score, frames}, "
                                "at most moments_per_video per video. Results carry thumbnail_url (GET /frames/{image_id}); "
                                "an indexed frame's image_id can be the query (\"more like this\"). A search page is served at /. "
                                "The ingest routes (/ingest/*, /jobs) are listed when DAGSTER_URL is set."},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
        },
    }
    if api_key:
        document["security"] = [{"apiKey": []}]
    return document
