"""The three kinds of search, as blocking functions over the shared encoder and index.

The routes run these in a worker thread. Each returns the results and its stage timings
(milliseconds): ``encode`` (model), ``search`` (index), and ``decode`` for query images.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from resources.embedding.encoder import FrameEncoder
from resources.embedding.patches import PatchConfig, plan_patches
from resources.frame_sources.images import decode_image, image_to_tensor
from resources.s3.urls import public_url
from resources.vector_index import VectorIndex
from resources.vector_index.schema import SearchFilters, SearchHit, point_id
from search_service.frames import FrameNotIndexed, parse_image_id, thumbnail_url
from search_service.limits import RequestLimits
from search_service.schemas import RankFields, SearchResult


@dataclass
class Searcher:
    """What every search needs: the encoder, the open index and the query-patch settings."""

    encoder: FrameEncoder
    index: VectorIndex
    patch_config: PatchConfig
    max_pixels: int  # MAX_IMAGE_PIXELS: query images with more are refused (413) from their header
    rerank_pool: int | None = None
    max_query_pixels: int = RequestLimits.max_query_pixels  # larger query images are scaled down to this
    max_query_patches: int = RequestLimits.max_query_patches  # query patches above this are subsampled


class Timer:
    def __init__(self) -> None:
        self.ms: dict[str, float] = {}

    def run(self, stage: str, fn, *args, **kwargs):  # noqa: ANN001, ANN201 - any callable
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.ms[stage] = round(self.ms.get(stage, 0.0) + (time.perf_counter() - started) * 1000, 3)


def _as_int(value: object) -> int:
    """A payload number (stored JSON) as an int."""
    if isinstance(value, (int, float, str)):
        return int(value)
    raise TypeError(f"payload value {value!r} is not a number")


def _optional_int(value: object) -> int | None:
    return None if value is None else _as_int(value)


def to_results(hits: Sequence[SearchHit]) -> list[SearchResult]:
    """The seed's result objects. ``s3_url`` is the stored frame URL as clients may see it
    (:func:`resources.s3.urls.public_url`): never a server path or a pre-signed signature."""
    results = []
    for hit in hits:
        p = hit.payload
        results.append(
            SearchResult(
                image_id=str(p["image_id"]), video_id=_as_int(p["video_id"]), frame_id=_as_int(p["frame_id"]),
                score=hit.score, global_score=hit.global_score, maxsim_score=hit.maxsim_score,
                s3_url=public_url(str(p.get("url", ""))), width=_as_int(p.get("width", 0)), height=_as_int(p.get("height", 0)),
                timestamp_ms=_optional_int(p.get("timestamp_ms")),
                best_patch_box=hit.best_patch_box,
                span_end_ms=_optional_int(p.get("span_end_ms")),
                thumbnail_url=thumbnail_url(p) if "image_id" in p else None,
            )
        )
    return results


def fit_query_image(image: Image.Image, max_pixels: int) -> Image.Image:
    """``image`` scaled down, aspect kept, to at most ``max_pixels`` pixels; smaller ones unchanged.

    Scaled rather than refused: a 12 MP phone photo is a fair query. The global vector hardly
    changes (the model sees 224 pixels a side either way), and the patch grid becomes that of a
    frame-sized picture, closer to how the indexed frames were cut.
    """
    width, height = image.size
    if width * height <= max_pixels:
        return image
    scale = math.sqrt(max_pixels / (width * height))
    size = (max(1, int(width * scale)), max(1, int(height * scale)))  # floored: never over the bound
    # reducing_gap: shrink by an integer factor first (cheap box filter), then resample the rest.
    return image.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)


def query_patch_config(config: PatchConfig, max_patches: int) -> PatchConfig:
    """The frames' patch settings with the query's patch cap (the lower of the two caps)."""
    cap = max_patches if config.max_patches is None else min(config.max_patches, max_patches)
    return replace(config, max_patches=cap)


def query_image_vectors(searcher: Searcher, data: bytes, timer: Timer, with_patches: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """The query image's global vector ``(dim,)`` and, for rerank, its patch vectors
    ``(patches, dim)``: planned like the frames' but at most ``max_query_patches`` of them, on
    the image scaled to at most ``max_query_pixels``."""
    image = timer.run("decode", decode_image, data, max_pixels=searcher.max_pixels)
    image = timer.run("decode", fit_query_image, image, searcher.max_query_pixels)
    frame = image_to_tensor(image)  # (3, H, W)
    encoder = searcher.encoder
    global_vector = timer.run("encode", encoder.encode_global, [frame])[0]
    if not with_patches:
        return global_vector, None
    config = query_patch_config(searcher.patch_config, searcher.max_query_patches)
    plan = plan_patches(frame.shape[2], frame.shape[1], config)
    [patches] = timer.run("encode", encoder.encode_patches, [frame], [plan])
    return global_vector, patches


@dataclass(frozen=True)
class IndexedFrame:
    """An indexed frame used as a query ("more like this"): its stored vectors, no image to decode."""

    image_id: str


def frame_query_vectors(searcher: Searcher, frame: IndexedFrame, timer: Timer, with_patches: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """The frame's stored global vector ``(dim,)`` and, for rerank, its patch vectors ``(patches, dim)``,
    evenly thinned to at most ``max_query_patches`` rows; :class:`FrameNotIndexed` if it is not indexed."""
    pid = point_id(*parse_image_id(frame.image_id))
    found = timer.run("lookup", searcher.index.frame_vectors, pid)
    if found is None:
        raise FrameNotIndexed(f"frame {frame.image_id} is not in the index")
    global_vector, patches = found
    if not with_patches:
        return global_vector, None
    if len(patches) > searcher.max_query_patches:
        patches = patches[np.linspace(0, len(patches) - 1, searcher.max_query_patches).round().astype(int)]
    return global_vector, patches


def any_query_vectors(searcher: Searcher, image: bytes | IndexedFrame, timer: Timer, with_patches: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Vectors of a query image given as bytes (decoded and encoded) or as an indexed frame (read)."""
    if isinstance(image, IndexedFrame):
        return frame_query_vectors(searcher, image, timer, with_patches)
    return query_image_vectors(searcher, image, timer, with_patches)


def _search(searcher: Searcher, timer: Timer, vector: np.ndarray, patches: np.ndarray | None, request: RankFields, top_k: int, filters: SearchFilters) -> list[SearchHit]:
    return timer.run(
        "search", searcher.index.search, vector, top_k=top_k, filters=filters,
        patch_queries=patches if request.rerank else None, alpha=request.rerank_alpha, pool=searcher.rerank_pool,
    )


def text_search(searcher: Searcher, query: str, request: RankFields) -> tuple[list[SearchHit], dict[str, float]]:
    """Text vector against frames; with rerank, the one text vector is MaxSim-matched against
    each candidate's patches, which finds small things a global vector misses."""
    timer = Timer()
    vector = timer.run("encode", searcher.encoder.encode_texts, [query])[0]
    hits = _search(searcher, timer, vector, vector[None], request, request.top_k, request.filters())
    return hits, timer.ms


def image_search(searcher: Searcher, data: bytes, request: RankFields) -> tuple[list[SearchHit], dict[str, float]]:
    """Query image against frames; with rerank, its own patches (planned like the frames')."""
    timer = Timer()
    vector, patches = query_image_vectors(searcher, data, timer, request.rerank)
    hits = _search(searcher, timer, vector, patches, request, request.top_k, request.filters())
    return hits, timer.ms


def similar_search(searcher: Searcher, frame: IndexedFrame, request: RankFields) -> tuple[list[SearchHit], dict[str, float]]:
    """"More like this": the frame's own stored vectors as the query; the frame itself is left out."""
    timer = Timer()
    vector, patches = frame_query_vectors(searcher, frame, timer, request.rerank)
    hits = _search(searcher, timer, vector, patches, request, request.top_k + 1, request.filters())
    return [h for h in hits if h.payload.get("image_id") != frame.image_id][: request.top_k], timer.ms


def hybrid_search(
    searcher: Searcher, text: str, image: bytes | IndexedFrame, text_weight: float, image_weight: float, request: RankFields
) -> tuple[list[SearchHit], dict[str, float]]:
    """``fused = text_weight * text_score + image_weight * image_score`` over the union of each
    modality's candidates; a candidate one modality did not return is scored for it exactly."""
    timer = Timer()
    text_vector = timer.run("encode", searcher.encoder.encode_texts, [text])[0]
    image_vector, patches = any_query_vectors(searcher, image, timer, request.rerank)
    pool = max(request.top_k, 50)
    filters = request.filters()
    by_text = {h.point_id: h for h in _search(searcher, timer, text_vector, text_vector[None], request, pool, filters)}
    by_image = {h.point_id: h for h in _search(searcher, timer, image_vector, patches, request, pool, filters)}
    for scores, vector, rows in ((by_text, text_vector, text_vector[None]), (by_image, image_vector, patches)):
        missing = tuple((set(by_text) | set(by_image)) - set(scores))
        if missing:
            exact = _search(searcher, timer, vector, rows, request, len(missing), replace(filters, point_ids=missing))
            scores.update({h.point_id: h for h in exact})
    fused = []
    for pid in set(by_text) | set(by_image):
        t, i = by_text.get(pid), by_image.get(pid)
        if t is None or i is None:
            continue  # not scorable in one modality (deleted between queries)
        score = text_weight * t.score + image_weight * i.score
        global_score = text_weight * t.global_score + image_weight * i.global_score
        maxsim = None if t.maxsim_score is None or i.maxsim_score is None else text_weight * t.maxsim_score + image_weight * i.maxsim_score
        fused.append(SearchHit(pid, score, global_score, maxsim, i.payload, i.best_patch, i.best_patch_box))
    fused.sort(key=lambda h: -h.score)
    return fused[: request.top_k], timer.ms
