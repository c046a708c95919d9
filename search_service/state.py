"""What the service holds while it runs: the encoder, the index and, in embedded mode, the
checkpoint follower that keeps the index equal to what the pipeline publishes.

The index is opened by a background thread. While another process (a pipeline run) holds the
embedded shard, the thread retries every second and ``/healthz`` answers 503 with the reason;
once it has the shard, it follows the checkpoint folder until shutdown.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from starlette.requests import Request

from resources.embedding.encoder import FrameEncoder
from resources.embedding.patches import PatchConfig
from resources.frame_sources import FrameSource, LocalFolderSource, S3FrameSource
from resources.s3.client import S3Settings, make_s3_client
from resources.settings import IndexSettings
from resources.vector_index import IndexBusyError, IndexUnavailableError, VectorIndex
from resources.vector_index.follower import CheckpointFollower
from resources.vector_index.layout import PATCH_POINT_VECTOR
from resources.vector_index.schema import SchemaMismatchError
from search_service.config import ServiceSettings
from search_service.dagster_api import DagsterApi
from search_service.frames import FrameReader
from search_service.limits import RequestLimits
from search_service.query_images import QueryImageFetcher
from search_service.redaction import Redactor
from search_service.search import Searcher

log = logging.getLogger(__name__)


class IndexNotReady(RuntimeError):
    """The index is not open (yet); the message says why."""


@dataclass
class ServiceState:
    settings: ServiceSettings
    index_settings: IndexSettings
    encoder: FrameEncoder
    patch_config: PatchConfig
    max_pixels: int
    fetcher: QueryImageFetcher
    open_index: Callable[[], VectorIndex]
    dagster: DagsterApi
    s3: S3Settings
    limits: RequestLimits = field(default_factory=RequestLimits)  # MAX_QUERY_PIXELS/PATCHES for searches
    frame_reader: FrameReader | None = None  # GET /frames: reads indexed frames' pictures
    index: VectorIndex | None = None
    index_error: str | None = "opening the index"
    follower: CheckpointFollower | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @functools.cached_property
    def redact(self) -> Redactor:
        """Takes server paths and internal endpoints out of pipeline text shown to clients."""
        return Redactor(
            private_roots=[self.settings.checkpoint_dir, self.settings.frames_root],  # s3:// roots are kept
            endpoints=[self.settings.dagster_url, self.index_settings.url],
        )

    def start(self) -> None:
        self._thread = threading.Thread(target=self._hold_index, name="index-holder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self.index is not None:
            self.index.close()
            self.index = None
        self.fetcher.close()
        self.dagster.close()

    def _hold_index(self) -> None:
        while not self._stop.is_set():
            try:
                index = self.open_index()
            except (IndexBusyError, IndexUnavailableError) as exc:
                self.index_error = str(exc)
                self._stop.wait(1.0)
                continue
            except SchemaMismatchError as exc:
                # Needs an operator (another collection, or a re-sync): say so in /healthz and the
                # page instead of "opening the index" forever; retrying cannot help.
                self.index_error = str(exc)
                log.error("index not opened: %s", exc)
                return
            self.index, self.index_error = index, None
            log.info("index open (%s, collection %s)", index.mode, index.schema.collection)
            # Embedded: we own the shard, so what the pipeline publishes reaches the index through
            # us. Server: the pipeline syncs each video itself, and we only remove the videos whose
            # checkpoint was deleted (a reader of a folder it cannot see never deletes anything).
            self.follower = CheckpointFollower(index, self.settings.checkpoint_dir, apply=index.mode == "embedded")  # a folder or s3://
            self.follower.run(self._stop, self.settings.follow_interval_s)
            return

    @property
    def s3_endpoint(self) -> str | None:
        return self.s3.endpoint_url

    def frame_source(self) -> FrameSource:
        """The pipeline's frame source (FRAMES_ROOT), where ingest records frames."""
        root = self.settings.frames_root
        if root.startswith("s3://"):
            return S3FrameSource(make_s3_client(self.s3), root, fps=self.settings.frames_fps, endpoint_url=self.s3.endpoint_url)
        return LocalFolderSource(Path(root), fps=self.settings.frames_fps)

    def searcher(self) -> Searcher:
        if self.index is None:
            raise IndexNotReady(self.index_error or "the index is not open")
        return Searcher(
            self.encoder, self.index, self.patch_config, self.max_pixels, self.index_settings.rerank_pool,
            max_query_pixels=self.limits.max_query_pixels, max_query_patches=self.limits.max_query_patches,
        )

    @staticmethod
    def _count(index: VectorIndex | None) -> int | None:
        if index is None:
            return None
        try:
            return index.count()
        except (IndexUnavailableError, IndexBusyError):
            return None

    def health(self) -> dict[str, object]:
        info = self.encoder.info
        index = self.index
        return {
            "ok": index is not None,
            "config": {
                "model_id": info.model_id,
                "embed_dim": info.embed_dim,
                "device": info.device,
                "precision": info.precision,
                "weights_random": info.weights_random,
                "weights_kind": info.provenance.kind,  # random | synthetic-world | pretrained
                "weights_description": info.provenance.description,  # what the model knows
                "collection": self.index_settings.collection,
                "patch_config": self.patch_config.fingerprint(),
                "rerank_pool": self.index_settings.rerank_pool or "max(100, 3 x top_k)",
                # what the open index searches with (PATCH_SEARCH_EF), None until it is open
                "patch_search_ef": index.layout.patches.vector(PATCH_POINT_VECTOR).search_ef if index is not None else None,
            },
            "qdrant_reachable": index is not None,
            "model_loaded": True,
            "using_multivector": True,
            "index_mode": index.mode if index is not None else None,
            "index_error": self.index_error,
            "frames_indexed": self._count(index),  # the page's empty state
            "follower": None if self.follower is None else {"applied": self.follower.applied, "errors": self.follower.errors},
        }


def service_state(request: Request) -> ServiceState:
    """The :class:`ServiceState` the app's lifespan put on every request."""
    return request.state.service
