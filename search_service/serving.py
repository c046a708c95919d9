"""Which generation answers searches, and the switch to another while searches go on.

:class:`Switcher` holds one :class:`Serving` - a generation's model, patch settings, index and
checkpoint follower - and reads the generation pointer (:mod:`resources.generations`) whenever the
service's holder thread asks it to (:meth:`Switcher.follow`). When the pointer names another
generation, it loads that generation's model (unless it is the one loaded), opens its collection
and follower *beside* the serving ones, then swaps all of them in one assignment: a search takes
the serving set once, so it runs wholly on the old generation or wholly on the new one, and none
waits or fails. The old set is closed ``retire_after_s`` later, when the searches that took it
have finished - or revived at once by a rollback within that time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from resources.checkpoints.store import CheckpointStore
from resources.embedding.encoder import FrameEncoder
from resources.embedding.patches import PatchConfig
from resources.generations import BASE, Generation, GenerationPointer, list_generations, load_record
from resources.vector_index import IndexUnavailableError, VectorIndex
from resources.vector_index.follower import CheckpointFollower

log = logging.getLogger(__name__)
RETIRE_AFTER_S = 30.0  # a replaced generation is closed this long after the swap (in-flight searches)
OTHERS_EVERY_S = 30.0  # how often the other generations' progress is listed


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
class Switcher:
    """Keeps the generation the pointer names serving (the base one: the environment's settings).

    ``pointer`` None: generations are not followed, the base one serves for good."""

    base: Generation
    base_encoder: FrameEncoder
    base_patch_config: PatchConfig
    open_base: Callable[[], VectorIndex]
    checkpoint_root: str  # CHECKPOINT_DIR: where the generations' records are
    pointer: GenerationPointer | None = None
    open_generation: Callable[[Generation, int], VectorIndex] | None = None
    load_encoder: Callable[[Generation], FrameEncoder] | None = None
    retire_after_s: float = RETIRE_AFTER_S
    serving: Serving | None = None
    error: str | None = None  # why the pointer's generation is not served (yet)
    # The other generations' progress (checkpoints published of the videos the serving one has),
    # for /healthz and the page; listed every OTHERS_EVERY_S.
    others: list[dict[str, object]] = field(default_factory=list)
    _others_at: float = 0.0
    _retiring: list[tuple[float, Serving]] = field(default_factory=list)

    def follow(self) -> None:
        """Serve what the pointer names; raises IndexBusyError / IndexUnavailableError /
        SchemaMismatchError while nothing serves yet (after that, errors go to ``error``)."""
        try:
            self._follow_pointer()
        finally:
            self._retire_old()
            self._refresh_others()

    def close(self) -> None:
        serving, self.serving = self.serving, None
        for _, retired in self._retiring:
            retired.index.close()
        self._retiring.clear()
        if serving is not None:
            serving.index.close()

    def health(self) -> dict[str, object] | None:
        if self.pointer is None:
            return None
        generation = self.serving.generation if self.serving is not None else None
        return {
            "serving": generation.name if generation is not None else None,
            "model": generation.model if generation is not None else None,
            "pointer": self._pointer_state(),
            "error": self.error,
            "others": self.others,  # e.g. the next generation a backfill is filling: its progress
        }

    def _pointer_state(self) -> dict[str, object] | None:
        try:
            state = self.pointer.read() if self.pointer is not None else None
        except Exception as exc:  # noqa: BLE001 - health reports, never fails
            return {"error": str(exc)}
        return None if state is None else {"active": state.active, "previous": state.previous, "switched_at": state.switched_at}

    def _wanted(self) -> Generation | None:
        """The generation the pointer names (None: the base one, or generations not followed)."""
        if self.pointer is None:
            return None
        try:
            name = self.pointer.active()
        except Exception as exc:  # noqa: BLE001 - an unreadable pointer keeps what serves
            self.error = f"cannot read the generation pointer: {exc}"
            return self.serving.generation if self.serving is not None else None
        if name == BASE:
            return None
        if self.serving is not None and self.serving.generation.name == name:
            return self.serving.generation
        record = load_record(self.checkpoint_root, name)
        if record is None:
            self.error = f"the pointer names generation {name}, which has no record under CHECKPOINT_DIR"
            return self.serving.generation if self.serving is not None else None
        return record

    def _follow_pointer(self) -> None:
        wanted = self._wanted() or self.base
        current = self.serving
        if current is not None and current.generation.name == wanted.name:
            return
        name = wanted.name
        revived = next((s for _, s in self._retiring if s.generation.name == name), None)  # a quick rollback
        try:
            if revived is not None:
                self._retiring = [(at, s) for at, s in self._retiring if s is not revived]
            serving = revived or self._open(wanted)
        except Exception as exc:  # noqa: BLE001 - a generation that cannot serve never stops the serving one
            if current is None:
                raise  # nothing serves yet: the service says why in /healthz
            self.error = f"switching to generation {name}: {type(exc).__name__}: {exc}"
            log.error("generation %s not served: %s", name, self.error)
            return
        self.serving, self.error = serving, None  # the swap: one assignment
        self._others_at = 0.0  # another generation serves: list the others' progress again now
        log.info("index open (%s, collection %s, generation %s)", serving.index.mode, serving.index.schema.collection, serving.generation.name)
        if current is not None:
            self._retiring.append((time.monotonic() + self.retire_after_s, current))

    def _open(self, generation: Generation) -> Serving:
        """A serving set for ``generation`` (the base one: the environment's), opened beside the current one."""
        if generation.name == BASE or self.open_generation is None:
            encoder, patch_config, index = self.base_encoder, self.base_patch_config, self.open_base()
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
        if _same_model(self.base, generation):
            return self.base_encoder
        if self.load_encoder is None:
            raise IndexUnavailableError(f"generation {generation.name} needs model {generation.model}, and no loader is set")
        return self.load_encoder(generation)

    def _refresh_others(self) -> None:
        """Each other recorded generation's published checkpoints against the serving one's: two
        listings per generation, no shard opened (a pipeline run may be writing it)."""
        serving = self.serving
        if self.pointer is None or serving is None or time.monotonic() - self._others_at < OTHERS_EVERY_S:
            return
        self._others_at = time.monotonic()
        try:
            videos = set(CheckpointStore(serving.generation.checkpoint_dir).published())
            self.others = [
                {"name": g.name, "model": g.model, "collection": g.collection,
                 "published": len(videos & set(CheckpointStore(g.checkpoint_dir).published())), "of": len(videos)}
                for g in list_generations(self.checkpoint_root) if g.name != serving.generation.name
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


def _same_model(a: Generation | None, b: Generation) -> bool:
    return a is not None and (a.model, a.pretrained, a.global_resize) == (b.model, b.pretrained, b.global_resize)
