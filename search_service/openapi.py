"""The OpenAPI 3.1 description of the service, built from the same pydantic models that
validate the requests (so the document cannot drift from the code)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import BaseModel

from search_service.schemas import HybridSearch, HybridUpload, ImageSearch, IngestBatch, IngestItem, SearchResponse, TextSearch, UploadSearch

ERRORS = {
    "400": "invalid JSON, or an undecodable query image or URL that is refused",
    "401": "missing or wrong X-API-Key (when SEARCH_API_KEY is set)",
    "404": "the query image's S3 object does not exist, or image_id names no indexed frame",
    "413": "query image or upload over the size or pixel limit",
    "422": "a field is missing, of the wrong type or out of range; detail names it",
    "502": "S3 refused or failed to serve the query image",
    "503": "the index is not open yet (or held by another process); retry",
}


def _json_post(summary: str, model: type[BaseModel]) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}},
            "responses": {
                "200": {"description": "ranked frames", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SearchResponse"}}}},
                **{code: {"description": text} for code, text in ERRORS.items()},
            },
        }
    }


def _ingest(summary: str, model: type[BaseModel]) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}},
            "responses": {
                "200": {"description": "done (the seed's response fields)"},
                "202": {"description": "started, or still running after INGEST_WAIT_S: poll GET /jobs/{job_id}"},
                "422": {"description": "a field is invalid, or the frame could not be ingested"},
                "503": {"description": "DAGSTER_URL unset or unreachable"},
            },
        }
    }


FRAMES: dict[str, Any] = {
    "get": {
        "summary": "The picture of an indexed frame as a JPEG (only frames in the index; never a client path)",
        "parameters": [
            {"name": "image_id", "in": "path", "required": True, "schema": {"type": "string", "pattern": r"^\d{1,19}:\d{1,19}$"}, "description": '"<video_id>:<frame_id>"'},
            {"name": "size", "in": "query", "schema": {"type": "integer", "minimum": 16, "maximum": 4096}, "description": "longer side at most this many pixels"},
            {"name": "box", "in": "query", "schema": {"type": "string"}, "description": "x,y,w,h in frame pixels to draw (e.g. a result's best_patch_box)"},
            {"name": "v", "in": "query", "schema": {"type": "string"}, "description": "checkpoint version (thumbnail_url sets it): the answer is immutable while it is current"},
        ],
        "responses": {
            "200": {"description": "the frame", "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}},
            "304": {"description": "not modified (If-None-Match matched the ETag)"},
            "401": {"description": ERRORS["401"]},
            "404": {"description": "not an image id, or no such frame in the index, or its file/object is gone"},
            "422": {"description": "size or box out of range"},
            "501": {"description": "the frame lies in a video file this build cannot decode"},
            "502": {"description": "the frame's file or object could not be read"},
            "503": {"description": ERRORS["503"]},
        },
    }
}


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for model in (TextSearch, ImageSearch, HybridSearch, UploadSearch, HybridUpload, SearchResponse, IngestItem, IngestBatch):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    upload_fields = {
        "type": "object",
        "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary"}, **schemas["UploadSearch"]["properties"]},
    }
    upload = _json_post("Search by an uploaded image (multipart; parameters as form fields or query string)", UploadSearch)
    upload["post"]["requestBody"] = {"required": True, "content": {"multipart/form-data": {"schema": upload_fields}}}
    hybrid_fields = {**upload_fields, "required": ["file", "text_query"], "properties": {"file": {"type": "string", "format": "binary"}, **schemas["HybridUpload"]["properties"]}}
    hybrid_upload = _json_post("Fuse a text query and an uploaded image (multipart; parameters as form fields or query string)", HybridUpload)
    hybrid_upload["post"]["requestBody"] = {"required": True, "content": {"multipart/form-data": {"schema": hybrid_fields}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "framesearch search service", "version": "0.1.0",
                 "description": "Text, image and hybrid search over video frames, with patch-level MaxSim rerank. "
                                "Every search takes group_by=\"moments\" to also answer with moments: a video's hits among the "
                                "top_k at most moment_gap_ms apart merged into {video_id, start_ms, end_ms, best, score, frames}, "
                                "at most moments_per_video per video. Results carry thumbnail_url (GET /frames/{image_id}); "
                                "an indexed frame's image_id can be the query (\"more like this\"). A search page is served at /."},
        "paths": {
            "/healthz": {"get": {"summary": "Readiness: 200 with a config summary when the model and index are ready, else 503",
                                 "responses": {"200": {"description": "ready"}, "503": {"description": "not ready; index_error says why"}}}},
            "/search/text": _json_post("Search frames by text", TextSearch),
            "/search/image": _json_post("Search frames by an image at an S3 URL, or by an indexed frame (image_id: more like this)", ImageSearch),
            "/search/image/upload": upload,
            "/search/hybrid": _json_post("Fuse a text and an image query (image by S3 URL or indexed image_id)", HybridSearch),
            "/search/hybrid/upload": hybrid_upload,
            "/frames/{image_id}": FRAMES,
            "/ingest/frame": _ingest("Ingest one frame through a Dagster run and wait for it", IngestItem),
            "/ingest/frames": _ingest("Ingest frames through Dagster runs and wait for them", IngestBatch),
            "/ingest/frames/async": _ingest("Start ingesting frames; poll GET /jobs/{job_id}", IngestBatch),
            "/jobs": {"get": {"summary": "Recent ingest jobs (query: limit 1-200, status)", "responses": {"200": {"description": "jobs"}, "503": {"description": "DAGSTER_URL unset or unreachable"}}}},
            "/jobs/{job_id}": {"get": {"summary": "One ingest job in the seed's job schema",
                                       "parameters": [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                                       "responses": {"200": {"description": "the job"}, "404": {"description": "unknown job"}, "503": {"description": "DAGSTER_URL unset or unreachable"}}}},
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
        },
    }
