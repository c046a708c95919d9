"""Embedding generations: which model and patch settings made a set of vectors, and where they live.

A *generation* is everything a search needs to agree with: the model (``OPENCLIP_MODEL``,
``OPENCLIP_PRETRAINED``), how frames became vectors (``GLOBAL_RESIZE_MODE``, the ``PATCH_*``
settings), the collection that holds the vectors and the checkpoint folder they were published to.
Two generations live side by side: the one the service answers from and the next one a backfill is
filling. The deployment's own settings are the *base* generation (``QDRANT_COLLECTION``,
``CHECKPOINT_DIR``); any other is named after its fingerprint, ``g<10 hex>``, with the collection
``<QDRANT_COLLECTION>_<name>`` and the folder ``<CHECKPOINT_DIR>/generations/<name>``, so the same
model and settings always land in the same place.

Records are JSON (``generation.json`` in the generation's checkpoint folder, and inside the
pointer): pure data, no clients.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace

from resources.embedding.encoder import EncoderConfig
from resources.embedding.patches import PatchConfig

BASE = "base"  # the deployment's own settings: QDRANT_COLLECTION and CHECKPOINT_DIR as configured
GENERATIONS_FOLDER = "generations"
RECORD_KEY = "generation.json"  # in a generation's checkpoint folder


@dataclass(frozen=True)
class Generation:
    """One generation: its name, where its vectors live and what made them."""

    name: str
    collection: str
    checkpoint_dir: str
    model: str
    pretrained: str
    global_resize: str
    patch: dict[str, object]  # PatchConfig's fields
    embed_dim: int = 0  # the model's vector size (0: not known yet); opening the collection needs it

    def encoder_config(self, base: EncoderConfig) -> EncoderConfig:
        """``base`` (device, precision, batch size: how to run) with this generation's model."""
        return replace(base, model=self.model, pretrained=self.pretrained, global_resize=self.global_resize)

    def patch_config(self) -> PatchConfig:
        fields = dict(self.patch)
        fields["scales"] = tuple(fields["scales"])  # type: ignore[arg-type]
        return PatchConfig(**fields)  # type: ignore[arg-type]

    def env(self) -> dict[str, str]:
        """The environment a pipeline deployment needs to fill this generation, beside the
        deployment's own QDRANT_* and CHECKPOINT_DIR (what ``generations plan`` prints)."""
        patch = self.patch_config()
        env = {
            "INDEX_GENERATION": self.name,
            "OPENCLIP_MODEL": self.model, "OPENCLIP_PRETRAINED": self.pretrained, "GLOBAL_RESIZE_MODE": self.global_resize,
            "PATCH_WINDOW": str(patch.window), "PATCH_STRIDE": str(patch.stride), "PATCH_CONTEXT_PAD": f"{patch.context_pad:g}",
            "PATCH_SCALES": ",".join(f"{s:g}" for s in patch.scales), "PATCH_MODE": patch.mode,
        }
        if patch.max_patches is not None:
            env["MAX_PATCHES_PER_IMAGE"] = str(patch.max_patches)
        return env

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Generation:
        return cls(**data)  # type: ignore[arg-type]


def index_generation_from_env(env: Mapping[str, str] | None = None) -> str:
    """INDEX_GENERATION: the generation a pipeline deployment fills (unset: the base one)."""
    env = os.environ if env is None else env
    name = env.get("INDEX_GENERATION", "").strip() or BASE
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", name):
        raise ValueError(f"INDEX_GENERATION may hold up to 40 letters, digits, '_' and '-', got {name!r}")
    return name


def fingerprint(config: EncoderConfig, patch: PatchConfig) -> str:
    """What makes two generations' vectors comparable: equal fingerprints, equal vectors."""
    text = "|".join((config.model, config.pretrained, config.global_resize, patch.fingerprint()))
    return "g" + hashlib.sha256(text.encode()).hexdigest()[:10]


def generation_for(
    config: EncoderConfig, patch: PatchConfig, base_collection: str, checkpoint_root: str, name: str | None = None, embed_dim: int = 0,
) -> Generation:
    """The generation of ``config`` and ``patch`` under a deployment whose base collection is
    ``base_collection`` and checkpoint folder ``checkpoint_root``; ``name`` ``BASE`` makes it the
    deployment's own (its collection and folder as configured)."""
    name = name or fingerprint(config, patch)
    root = checkpoint_root.rstrip("/")
    collection, folder = (base_collection, root) if name == BASE else (f"{base_collection}_{name}", f"{root}/{GENERATIONS_FOLDER}/{name}")
    fields = asdict(patch)
    fields["scales"] = list(patch.scales)
    return Generation(name, collection, folder, config.model, config.pretrained, config.global_resize, fields, embed_dim)
