"""The deployment's generations as its environment describes them: the base collection
(QDRANT_COLLECTION) and checkpoint folder (CHECKPOINT_DIR), the pointer of its index, and how to
open any generation's collection. Shared by ``python -m resources.generations`` and the Dagster
job ``switch_generation``."""

from __future__ import annotations

import os
from collections.abc import Callable

from resources.embedding.encoder import FrameEncoder
from resources.generations.pointer import GenerationPointer, default_pointer
from resources.generations.records import BASE, Generation, generation_for
from resources.generations.switch import SwitchRefused, coverage, list_generations, load_record
from resources.settings import IndexSettings, encoder_config_from_env, patch_config_from_env
from resources.vector_index import VectorIndex
from resources.vector_index.schema import IndexSchema


def checkpoint_root() -> str:
    """CHECKPOINT_DIR: the base generation's folder, under which the others live."""
    return os.environ.get("CHECKPOINT_DIR") or "var/checkpoints"


def pointer_for(settings: IndexSettings) -> GenerationPointer:
    """The pointer of the index: aliases on a Qdrant server, a file beside an embedded index."""
    pointer = default_pointer(settings)
    if pointer is None:
        raise SwitchRefused("QDRANT_URL=:memory: lives in one process: there is no index to switch from here")
    return pointer


def opener(settings: IndexSettings) -> Callable[[Generation], VectorIndex]:
    """Opens a generation's collection (waiting up to 30 s for an embedded shard a run holds)."""
    def open_generation(generation: Generation) -> VectorIndex:
        # A record without the vector size (the base one, from the env): the model says it.
        dim = generation.embed_dim or FrameEncoder.load(generation.encoder_config(encoder_config_from_env())).info.embed_dim
        schema = IndexSchema(generation.collection, dim)
        # Embedded: a pipeline run may hold the new generation's shard for a moment.
        return VectorIndex.open(schema, url=settings.url, path=settings.path, api_key=settings.api_key, layout=settings.layout(schema), lock_timeout_s=30.0)

    return open_generation


def base_generation(settings: IndexSettings) -> Generation:
    """The deployment as configured (its collection and checkpoint folder; the model from the env)."""
    return generation_for(encoder_config_from_env(), patch_config_from_env(), settings.collection, checkpoint_root(), name=BASE)


def status(pointer: GenerationPointer, root: str, settings: IndexSettings) -> dict[str, object]:
    """The active and previous generation, and each recorded generation's coverage of the active one."""
    state = pointer.read()
    active_name = state.active if state else BASE
    active = load_record(root, active_name) or (base_generation(settings) if active_name == BASE else None)
    rows = {}
    for generation in list_generations(root):
        row: dict[str, object] = {"model": generation.model, "pretrained": generation.pretrained, "collection": generation.collection}
        if active is not None and generation.name != active_name:
            try:
                with opener(settings)(generation) as index:
                    row["coverage"] = coverage(active, generation, index.video_ids()).to_json()
            except Exception as exc:  # noqa: BLE001 - status reports what it can
                row["coverage"] = {"error": str(exc)}
        rows[generation.name] = row
    return {"active": active_name, "previous": state.previous if state else None, "generations": rows}


