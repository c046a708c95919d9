"""What the service holds while it runs: the encoder, the index and, in embedded mode, the
checkpoint follower that keeps the index equal to what the pipeline publishes.

The index is opened by a background thread. While another process (a pipeline run) holds the
embedded shard, the thread retries every second and ``/healthz`` answers 503 with the reason;
once it has the shard, it follows the checkpoint folder until shutdown.

**Generations** (:mod:`resources.generations`): the thread also reads the generation pointer at
every poll. When it names another generation (a cut-over or a rollback), the thread loads that
generation's model (unless it is the one loaded), opens its collection and follower *beside* the
serving ones, then swaps all of them in one assignment (:class:`Serving`): a search takes the
serving set once, so it runs wholly on the old generation or wholly on the new one, and none
waits or fails. The old set is closed a grace period later, when the searches that took it have
finished.
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

from resources.checkpoints.store import CheckpointStore
from resources.embedding.encoder import FrameEncoder
from resources.embedding.patches import PatchConfig
from resources.frame_sources import FrameSource, LocalFolderSource, S3FrameSource
from resources.generations import BASE, Generation, GenerationPointer, list_generations, load_record
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
RETIRE_AFTER_S = 30.0  # a replaced generation is closed this long after the swap (in-flight searches)
NEXT_PROGRESS_EVERY_S = 30.0  # how often the other generations' progress is listed


class IndexNotReady(RuntimeError):
    """The index is not open (yet); the message says why."""


@dataclass(frozen=True)
class Serving:
    """What answers searches: one generation's model, patch settings, index and follower. Swapped
    as one object, never field by field."""

    generation: Generation
    encoder: FrameEncoder
    patch_config: PatchConfig
    index: VectorIndex
    follower: CheckpointFollower


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
    # Generations: the deployment's own (from the environment), the pointer naming the active one
    # (None: generations are not followed), and how to open another's collection and model.
    base_generation: Generation | None = None
    pointer: GenerationPointer | None = None
    open_generation: Callable[[Generation, int], VectorIndex] | None = None
    load_encoder: Callable[[Generation], FrameEncoder] | None = None
    serving: Serving | None = None
    index_error: str | None = "opening the index"
    generation_error: str | None = None  # why the pointer's generation is not served (yet)
    # The other generations' progress (checkpoints published of the videos the serving one has),
    # for /healthz and the page; refreshed every NEXT_PROGRESS_EVERY_S by the holder thread.
    others: list[dict[str, object]] = field(default_factory=list)
    _others_at: float = 0.0
    retire_after_s: float = RETIRE_AFTER_S
    _retiring: list[tuple[float, Serving]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

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
        self._thread = threading.Thread(target=self._hold_index, name="index-holder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        serving, self.serving = self.serving, None
        for _, retired in self._retiring:
            retired.index.close()
        self._retiring.clear()
        if serving is not None:
            serving.index.close()
        self.fetcher.close()
        self.dagster.close()

    def _hold_index(self) -> None:
        """Open the active generation, then follow its checkpoints and the pointer until stopped."""
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._follow_pointer()
            except SchemaMismatchError as exc:
                # Needs an operator (another collection, or a re-sync): say so in /healthz and the
                # page instead of "opening the index" forever; retrying cannot help.
                if self.serving is None:
                    self.index_error = str(exc)
                    log.error("index not opened: %s", exc)
                    return
                self.generation_error = str(exc)
            serving = self.serving
            if serving is not None:
                try:
                    serving.follower.poll()
                except Exception:  # noqa: BLE001 - keep following; the error is in the log
                    log.exception("checkpoint follower poll failed")
            self._retire_old()
            self._refresh_others()
            wait = self.settings.follow_interval_s if serving is not None else 1.0
            self._stop.wait(max(0.0, wait - (time.monotonic() - started)))

    def _wanted(self) -> Generation | None:
        """The generation the pointer names (None: the base one, or generations not followed)."""
        if self.pointer is None or self.base_generation is None:
            return None
        try:
            name = self.pointer.active()
        except Exception as exc:  # noqa: BLE001 - an unreadable pointer keeps what serves
            self.generation_error = f"cannot read the generation pointer: {exc}"
            return self.serving.generation if self.serving is not None else None
        if name == BASE:
            return None
        if self.serving is not None and self.serving.generation.name == name:
            return self.serving.generation
        record = load_record(self.settings.checkpoint_dir, name)
        if record is None:
            self.generation_error = f"the pointer names generation {name}, which has no record under CHECKPOINT_DIR"
            return self.serving.generation if self.serving is not None else None
        return record

    def _follow_pointer(self) -> None:
        wanted = self._wanted() or self.base_generation
        current = self.serving
        if current is not None and (wanted is None or current.generation.name == wanted.name):
            return
        name = wanted.name if wanted is not None else BASE
        revived = next((s for _, s in self._retiring if s.generation.name == name), None)  # a quick rollback
        try:
            if revived is not None:
                self._retiring = [(at, s) for at, s in self._retiring if s is not revived]
            serving = revived or self._open(wanted)
        except (IndexBusyError, IndexUnavailableError) as exc:
            if current is None:
                self.index_error = str(exc)
            else:
                self.generation_error = f"switching to generation {name}: {exc}"
            return
        self.serving, self.index_error, self.generation_error = serving, None, None  # the swap: one assignment
        self._others_at = 0.0  # another generation serves: list the others' progress again now
        log.info("index open (%s, collection %s, generation %s)", serving.index.mode, serving.index.schema.collection, serving.generation.name)
        if current is not None:
            self._retiring.append((time.monotonic() + self.retire_after_s, current))

    def _open(self, generation: Generation | None) -> Serving:
        """A serving set for ``generation`` (None or base: the environment's), opened beside the current one."""
        if generation is None or generation.name == BASE or self.open_generation is None:
            encoder, patch_config, index = self.encoder, self.patch_config, self.open_index()
            generation = generation or self.base_generation or _unnamed(self)
        else:
            current = self.serving
            same_model = current is not None and _same_model(current.generation, generation)
            encoder = current.encoder if same_model and current is not None else self._load_encoder(generation)
            patch_config = generation.patch_config()
            index = self.open_generation(generation, encoder.info.embed_dim)
        # Embedded: we own the shard, so what the pipeline publishes reaches the index through
        # us. Server: the pipeline syncs each video itself, and we only remove the videos whose
        # checkpoint was deleted (a reader of a folder it cannot see never deletes anything).
        follower = CheckpointFollower(index, generation.checkpoint_dir, apply=index.mode == "embedded")  # a folder or s3://
        return Serving(generation, encoder, patch_config, index, follower)

    def _load_encoder(self, generation: Generation) -> FrameEncoder:
        if _same_model(self.base_generation, generation):
            return self.encoder
        if self.load_encoder is None:
            raise IndexUnavailableError(f"generation {generation.name} needs model {generation.model}, and no loader is set")
        return self.load_encoder(generation)

    def _refresh_others(self) -> None:
        """Each other recorded generation's published checkpoints against the serving one's: two
        listings per generation, no shard opened (a pipeline run may be writing it)."""
        serving = self.serving
        if self.pointer is None or serving is None or time.monotonic() - self._others_at < NEXT_PROGRESS_EVERY_S:
            return
        self._others_at = time.monotonic()
        try:
            videos = set(CheckpointStore(serving.generation.checkpoint_dir).published())
            self.others = [
                {"name": g.name, "model": g.model, "collection": g.collection,
                 "published": len(videos & set(CheckpointStore(g.checkpoint_dir).published())), "of": len(videos)}
                for g in list_generations(self.settings.checkpoint_dir) if g.name != serving.generation.name
            ]
        except Exception as exc:  # noqa: BLE001 - progress is information; serving goes on
            log.warning("generation progress not read: %s", exc)

    def _retire_old(self) -> None:
        now = time.monotonic()
        due = [s for at, s in self._retiring if at <= now]
        self._retiring = [(at, s) for at, s in self._retiring if at > now]
        for serving in due:
            serving.index.close()
            log.info("generation %s closed", serving.generation.name)

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
            "generation": self._generation_health(serving),
        }

    def _generation_health(self, serving: Serving | None) -> dict[str, object] | None:
        if self.pointer is None:
            return None
        generation = serving.generation if serving is not None else None
        return {
            "serving": generation.name if generation is not None else None,
            "model": generation.model if generation is not None else None,
            "pointer": self._pointer_state(),
            "error": self.generation_error,
            "others": self.others,  # e.g. the next generation a backfill is filling: its progress
        }

    def _pointer_state(self) -> dict[str, object] | None:
        try:
            state = self.pointer.read() if self.pointer is not None else None
        except Exception as exc:  # noqa: BLE001 - health reports, never fails
            return {"error": str(exc)}
        return None if state is None else {"active": state.active, "previous": state.previous, "switched_at": state.switched_at}


def _same_model(a: Generation | None, b: Generation) -> bool:
    return a is not None and (a.model, a.pretrained, a.global_resize) == (b.model, b.pretrained, b.global_resize)


def _unnamed(state: ServiceState) -> Generation:
    """The environment's settings as a generation record, where none was given (tests)."""
    return Generation(
        BASE, state.index_settings.collection, state.settings.checkpoint_dir, state.encoder.config.model,
        state.encoder.config.pretrained, state.encoder.config.global_resize, {},
    )


def service_state(request: Request) -> ServiceState:
    """The :class:`ServiceState` the app's lifespan put on every request."""
    return request.state.service
