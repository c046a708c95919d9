"""Cut-over and rollback between generations, and the coverage that gates a cut-over.

A cut-over to generation B is allowed once B covers what the active generation A serves: every
video with a checkpoint in A's folder has one in B's, and B's collection holds it (the pipeline
publishes a checkpoint before it syncs, so a checkpoint alone is not yet searchable). Then the
pointer moves in one atomic step, remembering A, and the service follows within its poll
interval; a rollback moves it back to A. Nothing is deleted: A's collection and checkpoints stay
until an operator removes them, so a rollback is as fast as the cut-over.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from resources.checkpoints.store import CheckpointStore
from resources.generations.pointer import GenerationPointer, PointerState
from resources.generations.records import BASE, GENERATIONS_FOLDER, RECORD_KEY, Generation
from resources.vector_index import VectorIndex


class SwitchRefused(RuntimeError):
    """The switch would make search worse (coverage incomplete) or has nowhere to go."""


def folder_of(checkpoint_root: str, name: str) -> str:
    root = checkpoint_root.rstrip("/")
    return root if name == BASE else f"{root}/{GENERATIONS_FOLDER}/{name}"


def save_record(generation: Generation) -> None:
    """Write ``generation.json`` into the generation's checkpoint folder (a folder or S3)."""
    CheckpointStore(generation.checkpoint_dir).write_json(RECORD_KEY, generation.to_json())


def load_record(checkpoint_root: str, name: str) -> Generation | None:
    """The record of generation ``name`` under ``checkpoint_root``; None if it has none."""
    data = CheckpointStore(folder_of(checkpoint_root, name)).read_json(RECORD_KEY)
    return Generation.from_json(data) if data else None


def list_generations(checkpoint_root: str) -> list[Generation]:
    """Every recorded generation under ``checkpoint_root`` (the base one if it has a record)."""
    names = CheckpointStore(checkpoint_root).folders(GENERATIONS_FOLDER)
    found = [load_record(checkpoint_root, BASE), *(load_record(checkpoint_root, n) for n in names)]
    return [g for g in found if g is not None]


@dataclass
class Coverage:
    """How much of what the active generation serves the candidate holds."""

    videos: int  # videos the active generation has checkpoints for
    published: int  # of those, with a checkpoint in the candidate's folder
    indexed: int  # of those, also in the candidate's collection
    missing: list[int] = field(default_factory=list)  # some of those not yet indexed (for messages)

    @property
    def complete(self) -> bool:
        return self.indexed == self.videos

    def to_json(self) -> dict[str, object]:
        return {"videos": self.videos, "published": self.published, "indexed": self.indexed, "complete": self.complete}


def coverage(active: Generation, candidate: Generation, indexed_videos: set[int] | None) -> Coverage:
    """``candidate``'s coverage of ``active``; ``indexed_videos``: the candidate collection's
    videos (None when it cannot be read: then nothing counts as indexed)."""
    serving = set(CheckpointStore(active.checkpoint_dir).published())
    published = serving & set(CheckpointStore(candidate.checkpoint_dir).published())
    indexed = published & (indexed_videos or set())
    return Coverage(len(serving), len(published), len(indexed), sorted(serving - indexed)[:10])


def cut_over(
    pointer: GenerationPointer, base: Generation, to: str, open_index: Callable[[Generation], VectorIndex], force: bool = False,
) -> PointerState:
    """Point at generation ``to`` once it covers the active one (``force``: whatever it covers).
    ``base``: the deployment's own generation (its collection and checkpoint folder as configured)."""
    current = pointer.active()
    if to == current:
        raise SwitchRefused(f"generation {to} is already active")
    root = base.checkpoint_dir
    target = base if to == BASE else load_record(root, to)
    if target is None:
        raise SwitchRefused(f"no generation {to} under {root} (run `generations plan` with its settings, and the pipeline under what it prints)")
    active = base if current == BASE else load_record(root, current)
    if active is not None and not force:
        with open_index(target) as index:
            cover = coverage(active, target, index.video_ids())
        if not cover.complete:
            raise SwitchRefused(
                f"generation {to} holds {cover.indexed} of the {cover.videos} videos generation {current} serves "
                f"(missing e.g. {cover.missing}); let its backfill finish, or force"
            )
    state = PointerState(to, current, time.time())
    pointer.write(state)
    return state


def rollback(pointer: GenerationPointer) -> PointerState:
    """Point back at the generation before the active one."""
    state = pointer.read()
    if state is None or state.previous is None:
        raise SwitchRefused("nothing to roll back to: no generation was active before this one")
    back = PointerState(state.previous, state.active, time.time())
    pointer.write(back)
    return back
