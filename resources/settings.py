"""Configuration from environment variables, with the seed service's names and defaults.

One function per component reads its variables, so the pipeline's Dagster resources and the
search service build identical configurations from the same environment. Values are validated
here: a bad variable fails at start-up with its name, not deep inside a run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import overload

from resources.embedding.encoder import EncoderConfig
from resources.embedding.patches import PatchConfig
from resources.frame_sources.images import DEFAULT_MAX_PIXELS
from resources.vector_index.layout import DEFAULT_MEMORY, DEFAULT_PATCH_SEARCH_EF, MEMORY_TIERS, IndexLayout, index_layout
from resources.vector_index.schema import IndexSchema


class SettingsError(ValueError):
    """An environment variable holds a value that cannot be used; the message names it."""


def _get(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip()
    return value if value else default


@overload
def _int(env: Mapping[str, str], name: str, default: int) -> int: ...
@overload
def _int(env: Mapping[str, str], name: str, default: None) -> int | None: ...
def _int(env: Mapping[str, str], name: str, default: int | None) -> int | None:
    raw = env.get(name, "").strip()
    if not raw or raw.lower() == "none":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None


def patch_config_from_env(env: Mapping[str, str] | None = None) -> PatchConfig:
    """PATCH_WINDOW, PATCH_STRIDE, PATCH_CONTEXT_PAD, PATCH_SCALES, MAX_PATCHES_PER_IMAGE, PATCH_MODE."""
    env = os.environ if env is None else env
    raw_scales = _get(env, "PATCH_SCALES", "1.0")
    try:
        scales = tuple(float(part) for part in raw_scales.split(",") if part.strip())
    except ValueError:
        raise SettingsError(
            f"PATCH_SCALES must be comma-separated numbers such as '0.75,1.0,1.5', got {raw_scales!r}"
        ) from None
    try:
        return PatchConfig(
            window=_int(env, "PATCH_WINDOW", 224),
            stride=_int(env, "PATCH_STRIDE", 112),
            context_pad=_float(env, "PATCH_CONTEXT_PAD", 0.15),
            scales=scales,
            max_patches=_int(env, "MAX_PATCHES_PER_IMAGE", None),
            mode=_get(env, "PATCH_MODE", "crops"),
        )
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def encoder_config_from_env(env: Mapping[str, str] | None = None) -> EncoderConfig:
    """OPENCLIP_MODEL, OPENCLIP_PRETRAINED, BATCH_SIZE, OPENCLIP_DEVICE, OPENCLIP_PRECISION,
    GLOBAL_RESIZE_MODE, PATCH_CROP_METHOD."""
    env = os.environ if env is None else env
    try:
        return EncoderConfig(
            model=_get(env, "OPENCLIP_MODEL", "ViT-B-32"),
            pretrained=_get(env, "OPENCLIP_PRETRAINED", "laion2b_s34b_b79k"),
            batch_size=_int(env, "BATCH_SIZE", 64),
            device=_get(env, "OPENCLIP_DEVICE", "auto"),
            precision=_get(env, "OPENCLIP_PRECISION", "auto"),
            global_resize=_get(env, "GLOBAL_RESIZE_MODE", "pad"),
            crop_method=_get(env, "PATCH_CROP_METHOD", "auto"),
        )
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def max_image_pixels_from_env(env: Mapping[str, str] | None = None) -> int:
    """MAX_IMAGE_PIXELS: the decompression-bomb limit for every decoded image."""
    env = os.environ if env is None else env
    value = _int(env, "MAX_IMAGE_PIXELS", DEFAULT_MAX_PIXELS)
    if value is None or value < 1:
        raise SettingsError(f"MAX_IMAGE_PIXELS must be a positive integer, got {value}")
    return value


DEFAULT_VIDEOS_PER_RUN = 128


def videos_per_run_from_env(env: Mapping[str, str] | None = None) -> int:
    """VIDEOS_PER_RUN: the most videos one backfill run takes (Dagster's backfill policy cuts
    ranges by partition count). A run pays ~8 s of start-up (a process, the code location, the
    model) before its first frame; 128 videos of ~10 frames keep that under a tenth of the run on
    the 2-core machine measured (README, "Backfills at the speed of the work")."""
    env = os.environ if env is None else env
    value = _int(env, "VIDEOS_PER_RUN", DEFAULT_VIDEOS_PER_RUN)
    if value is None or value < 1:
        raise SettingsError(f"VIDEOS_PER_RUN must be a positive integer, got {value}")
    return value


def run_threads_from_env(env: Mapping[str, str] | None = None, cores: int | None = None) -> int | None:
    """CPU threads one run's encoder should use: the cores shared among the run queue's
    FRAMESEARCH_MAX_CONCURRENT_RUNS runs, so that N runs at once do not each start a thread per
    core (2 runs x 2 threads on 2 cores took 2.1x the time of 2 x 1 for the same frames; README).
    None - leave torch's default - when OMP_NUM_THREADS says it already, or one run at a time."""
    env = os.environ if env is None else env
    if env.get("OMP_NUM_THREADS", "").strip():
        return None
    runs = _int(env, "FRAMESEARCH_MAX_CONCURRENT_RUNS", None)
    if runs is None or runs <= 1:
        return None
    cores = cores if cores is not None else len(os.sched_getaffinity(0))
    return max(1, cores // runs)


@dataclass(frozen=True)
class IndexSettings:
    """Where the vector index lives: a Qdrant server (``url``) or an embedded shard (``path``)."""

    url: str | None  # QDRANT_URL: unset = embedded Qdrant Edge; ":memory:" = qdrant-client in-process
    path: str  # QDRANT_PATH: folder of the embedded shards
    api_key: str | None  # QDRANT_API_KEY
    collection: str  # QDRANT_COLLECTION
    rerank_pool: int | None  # RERANK_POOL_SIZE: candidates for MaxSim rerank; unset = max(100, 3 x top_k)
    # PATCH_SEARCH_EF: the patch graph's search beam for a text query: recall of small objects
    # against latency (bench index at 2.4M patch points: 512 -> 0.82 of the needles in 28 ms,
    # 2048 -> 0.96 in 55 ms). Queries only; the stored index does not change.
    patch_search_ef: int = DEFAULT_PATCH_SEARCH_EF
    # COMPANION_DEDUP: temporal dedup of the patch graph (resources/vector_index/companions.py) - a
    # window that keeps a cosine >= this over consecutive frames is one companion point. Unset or
    # "off": a point per window of every frame. A write setting: the pipeline and the service
    # (which syncs an embedded index) must share it.
    companion_dedup: float | None = None
    # INDEX_MEMORY: Qdrant's memory tier for every structure of the index's collections, given
    # when they are created: "cached" (default) or "cold" - memory-mapped, nearly nothing on the
    # heap - or None ("qdrant": Qdrant's own placement). See resources/vector_index/layout.py.
    memory: str | None = DEFAULT_MEMORY

    def layout(self, schema: IndexSchema) -> IndexLayout:
        """The index layout these settings read and write."""
        return index_layout(schema, patch_search_ef=self.patch_search_ef, companion_dedup=self.companion_dedup, memory=self.memory)


def index_settings_from_env(env: Mapping[str, str] | None = None) -> IndexSettings:
    """QDRANT_URL, QDRANT_PATH, QDRANT_API_KEY, QDRANT_COLLECTION, RERANK_POOL_SIZE, PATCH_SEARCH_EF,
    COMPANION_DEDUP, INDEX_MEMORY."""
    env = os.environ if env is None else env
    pool = _int(env, "RERANK_POOL_SIZE", None)
    if pool is not None and pool < 1:
        raise SettingsError(f"RERANK_POOL_SIZE must be a positive integer, got {pool}")
    patch_ef = _int(env, "PATCH_SEARCH_EF", DEFAULT_PATCH_SEARCH_EF)
    if not 1 <= patch_ef <= 65_536:
        raise SettingsError(f"PATCH_SEARCH_EF must be an integer from 1 to 65536, got {patch_ef}")
    collection = _get(env, "QDRANT_COLLECTION", "frames_v1")
    if not collection.replace("_", "").replace("-", "").isalnum():
        raise SettingsError(f"QDRANT_COLLECTION may hold letters, digits, '_' and '-', got {collection!r}")
    return IndexSettings(
        url=env.get("QDRANT_URL", "").strip() or None,
        path=_get(env, "QDRANT_PATH", "var/qdrant"),
        api_key=env.get("QDRANT_API_KEY", "").strip() or None,
        collection=collection,
        rerank_pool=pool,
        patch_search_ef=patch_ef,
        companion_dedup=_companion_dedup(env),
        memory=_index_memory(env),
    )


def _index_memory(env: Mapping[str, str]) -> str | None:
    raw = env.get("INDEX_MEMORY", "").strip().lower()
    if raw == "":
        return DEFAULT_MEMORY
    if raw == "qdrant":
        return None
    if raw not in MEMORY_TIERS:
        raise SettingsError(f"INDEX_MEMORY must be {', '.join(MEMORY_TIERS)} or qdrant (Qdrant's own placement), got {raw!r}")
    return raw


def _companion_dedup(env: Mapping[str, str]) -> float | None:
    raw = env.get("COMPANION_DEDUP", "").strip().lower()
    if raw in ("", "off", "none"):
        return None
    value = _float(env, "COMPANION_DEDUP", 1.0)
    if not 0.5 <= value <= 1.0:
        raise SettingsError(f"COMPANION_DEDUP must be off or a cosine from 0.5 to 1, got {value}")
    return value
