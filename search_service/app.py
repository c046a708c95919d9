"""The Starlette search service: ``uvicorn search_service.app:app``.

Everything is wired here, in one place: routes, middleware, exception handlers and the lifespan
that loads the encoder and opens the index (see ``search_service.state``). Configuration comes
from the same environment variables as the pipeline (OPENCLIP_*, PATCH_*, QDRANT_*, ...), plus
SEARCH_API_KEY, MAX_UPLOAD_BYTES, MAX_DOWNLOAD_BYTES, CHECKPOINT_DIR, INDEX_FOLLOW_INTERVAL_S.
"""

from __future__ import annotations

import contextlib
import hmac
from collections.abc import AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from resources.embedding.encoder import FrameEncoder
from resources.embedding.offline import load_encoder_or_offline
from resources.frame_sources import DEFAULT_MAX_BYTES as FRAME_MAX_BYTES
from resources.frame_sources import FrameSourceError
from resources.frame_sources.images import ImageDecodeError, ImageTooLargeError
from resources.generations import BASE, Generation, GenerationPointer, generation_for
from resources.generations.pointer import default_pointer
from resources.s3.client import make_s3_client, s3_settings_from_env
from resources.settings import (
    encoder_config_from_env,
    index_settings_from_env,
    max_image_pixels_from_env,
    patch_config_from_env,
)
from resources.vector_index import IndexBusyError, IndexUnavailableError, VectorIndex
from resources.vector_index.schema import IndexSchema
from search_service.config import ServiceSettings, service_settings_from_env
from search_service.dagster_api import DagsterApi, DagsterUnavailable
from search_service.errors import HTTPProblem
from search_service.frames import FrameNotIndexed, FrameReader, FrameUnavailable, get_frame
from search_service.ingest import get_job, ingest_frame, ingest_frames, ingest_frames_async, list_jobs
from search_service.limits import RequestGuard, request_limits_from_env
from search_service.metrics import MetricsMiddleware, ServiceMetrics, metrics_endpoint
from search_service.openapi import openapi_document
from search_service.page import page_routes
from search_service.query_images import QueryImageError, QueryImageFetcher
from search_service.routes import healthz, search_hybrid, search_hybrid_upload, search_image, search_image_upload, search_text
from search_service.serving import Switcher
from search_service.state import IndexNotReady, ServiceState, service_state

OPEN_PATHS = ("/healthz", "/openapi.json", "/", "/docs")  # answered without the API key
OPEN_PREFIXES = ("/static/",)  # the page's own files: it asks for the key once it has loaded


class APIKeyMiddleware:
    """Requires ``X-API-Key`` on every route but health and the API description, when a key is set."""

    def __init__(self, app: ASGIApp, api_key: str | None) -> None:
        self.app, self.api_key = app, api_key
        # Compared as bytes: hmac.compare_digest raises TypeError on non-ASCII str, which made any
        # non-ASCII header a 500 before authentication. Header bytes are whatever the client sent.
        self._expected = api_key.encode("utf-8") if api_key else b""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else ""
        if scope["type"] == "http" and self.api_key and path not in OPEN_PATHS and not path.startswith(OPEN_PREFIXES):
            sent = dict(scope["headers"]).get(b"x-api-key", b"")
            if not hmac.compare_digest(sent, self._expected):
                response = JSONResponse({"detail": "missing or wrong X-API-Key header"}, status_code=401)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPProblem)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status)


async def _http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (a malformed multipart body, an unknown path, a wrong method) with
    the problem body every other error has, instead of Starlette's plain text."""
    assert isinstance(exc, HTTPException)
    if exc.status_code in (204, 304):  # no body allowed
        return Response(status_code=exc.status_code, headers=exc.headers)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def _bad_image(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ImageDecodeError)
    status = 413 if isinstance(exc, ImageTooLargeError) else 400
    return JSONResponse({"detail": f"query image: {exc.reason}"}, status_code=status)


async def _query_image(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, QueryImageError)
    return JSONResponse({"detail": f"query image: {exc.reason}"}, status_code=exc.status)


async def _index_down(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": f"index unavailable: {exc}"}, status_code=503, headers={"Retry-After": "2"})


async def _dagster_down(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": service_state(request).redact(str(exc))}, status_code=503)  # DAGSTER_URL is internal


async def _no_frame(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=404)


async def _frame_unavailable(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FrameUnavailable)
    return JSONResponse({"detail": exc.reason}, status_code=exc.status)


def create_app(
    settings: ServiceSettings | None = None,
    *,
    encoder: FrameEncoder | None = None,
    open_index: Callable[[int], VectorIndex] | None = None,
    pointer: GenerationPointer | None = None,
    open_generation: Callable[[Generation, int], VectorIndex] | None = None,
) -> Starlette:
    """The service. Tests pass a ready ``encoder`` and an ``open_index(dim)``; by default both
    come from the environment when the app starts. Generations are followed through ``pointer``
    (default: the index's own - Qdrant aliases on a server, the pointer file of an embedded index
    - unless ``open_index`` is given), opening another generation's collection with
    ``open_generation(generation, dim)``."""
    settings = settings or service_settings_from_env()
    # Read once: the guard bounds bodies with them, the searches bound query images (a bad value
    # stops the service before it serves).
    limits = request_limits_from_env()
    metrics = ServiceMetrics()  # this app's own registry: GET /metrics
    running: dict[str, ServiceState] = {}  # the lifespan's state, for the scrape-time gauges
    metrics.watch(lambda: running.get("service"))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, ServiceState]]:
        frame_encoder: FrameEncoder
        if encoder is not None:
            frame_encoder = encoder
        else:
            config = encoder_config_from_env()
            if settings.offline_fallback:
                frame_encoder, _ = await run_in_threadpool(load_encoder_or_offline, config, settings.offline_model_dir)
            else:
                frame_encoder = await run_in_threadpool(FrameEncoder.load, config)
        index_settings = index_settings_from_env()
        dim = frame_encoder.info.embed_dim

        def open_collection(collection: str, dim: int) -> VectorIndex:
            schema = IndexSchema(collection, dim)
            return VectorIndex.open(
                schema, url=index_settings.url, path=index_settings.path, api_key=index_settings.api_key,
                layout=index_settings.layout(schema),
            )

        def default_open() -> VectorIndex:
            return open_collection(index_settings.collection, dim)

        def load_generation_encoder(generation: Generation) -> FrameEncoder:
            return FrameEncoder.load(generation.encoder_config(encoder_config_from_env()))

        patch_config = patch_config_from_env()
        base = generation_for(frame_encoder.config, patch_config, index_settings.collection, settings.checkpoint_dir, name=BASE)
        generation_pointer = pointer if pointer is not None else (None if open_index else default_pointer(index_settings))
        base_open = (lambda: open_index(dim)) if open_index else default_open

        s3 = s3_settings_from_env()
        state = ServiceState(
            settings=settings,
            index_settings=index_settings,
            encoder=frame_encoder,
            patch_config=patch_config,
            max_pixels=max_image_pixels_from_env(),
            fetcher=QueryImageFetcher(
                lambda: make_s3_client(s3), allowed=settings.allowed_locations(), endpoint_url=s3.endpoint_url,
                max_bytes=settings.max_download_bytes, timeout_s=s3.timeout_s,
            ),
            open_index=base_open,
            switcher=Switcher(
                base, frame_encoder, patch_config, base_open, settings.checkpoint_dir, pointer=generation_pointer,
                open_generation=open_generation or (lambda generation, dim: open_collection(generation.collection, dim)),
                load_encoder=load_generation_encoder,
            ),
            dagster=DagsterApi(settings.dagster_url),
            s3=s3,
            limits=limits,
            frame_reader=FrameReader(
                lambda: make_s3_client(s3), endpoint_url=s3.endpoint_url, max_bytes=FRAME_MAX_BYTES, max_pixels=max_image_pixels_from_env()
            ),
        )
        state.start()
        running["service"] = state
        try:
            yield {"service": state}
        finally:
            running.pop("service", None)
            await run_in_threadpool(state.stop)

    document = openapi_document(api_key=settings.api_key is not None, ingest=settings.dagster_url is not None)

    async def _openapi(request: Request) -> JSONResponse:
        return JSONResponse(document)

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/search/text", search_text, methods=["POST"]),
            Route("/search/image", search_image, methods=["POST"]),
            Route("/search/image/upload", search_image_upload, methods=["POST"]),
            Route("/search/hybrid", search_hybrid, methods=["POST"]),
            Route("/search/hybrid/upload", search_hybrid_upload, methods=["POST"]),
            Route("/frames/{image_id}", get_frame, methods=["GET"]),
            Route("/ingest/frame", ingest_frame, methods=["POST"]),
            Route("/ingest/frames", ingest_frames, methods=["POST"]),
            Route("/ingest/frames/async", ingest_frames_async, methods=["POST"]),
            Route("/jobs", list_jobs, methods=["GET"]),
            Route("/jobs/{job_id}", get_job, methods=["GET"]),
            Route("/openapi.json", _openapi, methods=["GET"]),
            *page_routes(),
            Route("/metrics", metrics_endpoint(metrics), methods=["GET"]),
        ],
        # The guard first: body limits and JSON 500s cover every route, the API-key check included.
        # Metrics outermost: requests the guard or the key check refuse are counted too.
        middleware=[Middleware(MetricsMiddleware, metrics=metrics), Middleware(RequestGuard, max_upload_bytes=settings.max_upload_bytes, limits=limits), Middleware(APIKeyMiddleware, api_key=settings.api_key)],
        exception_handlers={
            HTTPProblem: _problem,
            HTTPException: _http_exception,
            ImageDecodeError: _bad_image,
            QueryImageError: _query_image,
            IndexNotReady: _index_down,
            IndexBusyError: _index_down,
            IndexUnavailableError: _index_down,
            DagsterUnavailable: _dagster_down,
            FrameSourceError: _dagster_down,
            FrameNotIndexed: _no_frame,
            FrameUnavailable: _frame_unavailable,
        },
        lifespan=lifespan,
    )


app = create_app()
