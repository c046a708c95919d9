"""What the service holds while it runs: the encoder, the index and, in embedded mode, the
checkpoint follower that keeps the index equal to what the pipeline publishes.

The index is opened by a background thread. While another process (a pipeline run) holds the
embedded shard, the thread retries every second and ``/healthz`` answers 503 with the reason;
once it has the shard, it follows the checkpoint folder until shutdown.

**Generations** (:mod:`resources.generations`): at every poll the thread also asks its
:class:`search_service.serving.Switcher` to serve the generation the pointer names, which swaps
model, index and follower as one object while searches go on.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from starlette.requests import Request

from resources.embedding.encoder import FrameEncoder
from resources.embedding.patches import PatchConfig
from resources.frame_sources import FrameSource, LocalFolderSource, S3FrameSource
from resources.generations import BASE, Generation
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
from search_service.serving import Serving, Switcher

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
    # Which generation serves (resources.generations, search_service.serving); None: the base one
    # alone, built from the fields above by start().
    switcher: Switcher | None = None
    index_error: str | None = "opening the index"
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def serving(self) -> Serving | None:
        return self.switcher.serving if self.switcher is not None else None

    @property
    def index(self) -> VectorIndex | None:
        serving = self.serving
        return serving.index if serving is not None else None

    @property
    def follower(self) -> CheckpointFollower | None:
        serving = self.serving
        return serving.follower if serving is not None else None

    @functools.cached_property
    def redact(self) -> Redactor:
        """Takes server paths and internal endpoints out of pipeline text shown to clients."""
        return Redactor(
            private_roots=[self.settings.checkpoint_dir, self.settings.frames_root],  # s3:// roots are kept
            endpoints=[self.settings.dagster_url, self.index_settings.url],
        )

    def start(self) -> None:
        if self.switcher is None:
            base = Generation(BASE, self.index_settings.collection, self.settings.checkpoint_dir, self.encoder.config.model,
                              self.encoder.config.pretrained, self.encoder.config.global_resize, {})
            self.switcher = Switcher(base, self.encoder, self.patch_config, self.open_index, self.settings.checkpoint_dir)
        self._thread = threading.Thread(target=self._hold_index, name="index-holder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self.switcher is not None:
            self.switcher.close()
        self.fetcher.close()
        self.dagster.close()

    def _hold_index(self) -> None:
        """Open the active generation, then follow its checkpoints and the pointer until stopped."""
        assert self.switcher is not None
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.switcher.follow()
                self.index_error = None if self.switcher.serving is not None else self.index_error
            except (IndexBusyError, IndexUnavailableError) as exc:
                self.index_error = str(exc)  # nothing serves yet: retried every second
            except SchemaMismatchError as exc:
                # Needs an operator (another collection, or a re-sync): say so in /healthz and the
                # page instead of "opening the index" forever; retrying cannot help.
                if self.switcher.serving is None:
                    self.index_error = str(exc)
                    log.error("index not opened: %s", exc)
                    return
                self.switcher.error = str(exc)
            except Exception as exc:  # noqa: BLE001 - e.g. the base model's weights: say why, keep trying
                self.index_error = f"{type(exc).__name__}: {exc}"
                log.exception("index not opened")
            serving = self.serving
            if serving is not None:
                try:
                    serving.follower.poll()
                except Exception:  # noqa: BLE001 - keep following; the error is in the log
                    log.exception("checkpoint follower poll failed")
            wait = self.settings.follow_interval_s if serving is not None else 1.0
            self._stop.wait(max(0.0, wait - (time.monotonic() - started)))

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
        serving = self.serving  # read once: a whole generation, even across a swap
        if serving is None:
            raise IndexNotReady(self.index_error or "the index is not open")
        return Searcher(
            serving.encoder, serving.index, serving.patch_config, self.max_pixels, self.index_settings.rerank_pool,
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
        serving = self.serving
        info = (serving.encoder if serving is not None else self.encoder).info
        index = serving.index if serving is not None else None
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
                "collection": index.schema.collection if index is not None else self.index_settings.collection,
                "patch_config": (serving.patch_config if serving is not None else self.patch_config).fingerprint(),
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
            "follower": None if serving is None else {"applied": serving.follower.applied, "errors": serving.follower.errors},
            "generation": self.switcher.health() if self.switcher is not None else None,
        }



def service_state(request: Request) -> ServiceState:
    """The :class:`ServiceState` the app's lifespan put on every request."""
    return request.state.service
