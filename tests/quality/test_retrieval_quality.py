"""Retrieval quality in CI: a small needle library of the synthetic shapes world (fixed seeds)
through the real Dagster assets, the real service under uvicorn and each committed world model
(models/framesearch-world - or $OFFLINE_MODEL_DIR - and models/framesearch-world-rn). The library, the pipeline runs and the metrics
are the quality benchmark's own (benchmarks/quality.py); `./dev bench quality` prints the figures
at scale."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.needle_library import Library, LibrarySpec, build_library
from benchmarks.quality import (
    K,
    embed_library,
    exhaustive_rankings,
    query_service,
    recall_at,
    scores,
    serving,
    text_vectors,
)
from resources.embedding.encoder import FrameEncoder
from resources.embedding.offline import offline_config, offline_model_dir
from resources.settings import encoder_config_from_env

pytestmark = pytest.mark.slow

# 480 frames of 1280x720 (8 videos): 8 small-object captions and 4 large-object ones, 3 needle
# frames each. The service's default rerank pool (100) covers 21% of the frames. At 160 frames
# the seed's weighted sum at 0.3 still reached 0.9 of the small-object ceiling; at 480 it does
# not (0.83 of 1.00), so the size is what lets the fusion test below fail on it.
SPEC = LibrarySpec(frames=480, frames_per_video=60, small_captions=8, large_captions=4, needles=3, seed=7)
MARGIN = 0.25  # recall@10 that patch rerank must add to global search on small objects (measured: +0.42)


SECOND_MODEL = Path(__file__).resolve().parents[2] / "models" / "framesearch-world-rn"


@pytest.fixture(scope="module", params=["framesearch-world", "framesearch-world-rn"])
def indexed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Library, FrameEncoder]:
    """The library embedded and indexed with each committed world model (issue 19: defaults are
    judged on both, never on one)."""
    folder = offline_model_dir() if request.param == "framesearch-world" else SECOND_MODEL
    if not (folder / "open_clip_config.json").is_file():
        pytest.skip(f"no model at {folder} (models/{request.param} not committed, or OFFLINE_MODEL_DIR wrong)")
    work = tmp_path_factory.mktemp("quality")
    library = build_library(work / "library", SPEC)
    encoder = FrameEncoder.load(offline_config(encoder_config_from_env(), folder))
    report = embed_library(library, work, encoder.config.model, encoder.config.pretrained)
    assert report.frames == SPEC.frames and report.embedded == SPEC.frames
    return work, library, encoder


def test_library_ground_truth_is_exact(indexed: tuple[Path, Library, FrameEncoder]) -> None:
    _, library, _ = indexed
    assert len(library.queries) == 12 and all(len(q.relevant) == SPEC.needles for q in library.queries)
    relevant = [i for q in library.queries for i in q.relevant]
    assert len(set(relevant)) == len(relevant)  # no frame is a needle twice
    assert build_library(library.root, SPEC).queries == library.queries  # reused, not redrawn


def test_patch_rerank_beats_global_search_on_small_objects(indexed: tuple[Path, Library, FrameEncoder]) -> None:
    """Patch rerank = the pool ranked by MaxSim alone (alpha 0), at the service's default pool,
    beats global search on small objects (the global view shows a target a few pixels wide), and
    the API's default keeps large objects as global search does."""
    work, library, encoder = indexed
    with serving(work, encoder, library.queries) as base:  # RERANK_POOL_SIZE unset: 100 of 480 frames
        runs = query_service(base, library.queries, modes=("global", "rerank", "rerank_alpha0"))
    small = {mode: scores(run.rankings, library.queries, "small")["recall_at_10"] for mode, run in runs.items()}
    large = {mode: scores(run.rankings, library.queries, "large")["recall_at_10"] for mode, run in runs.items()}
    assert small["rerank_alpha0"] >= small["global"] + MARGIN, (small, large)
    assert large["rerank"] >= large["global"] - 0.1, (small, large)  # one large needle of 12 may move


def test_rerank_reaches_the_exhaustive_ceiling_when_its_pool_covers_every_frame(indexed: tuple[Path, Library, FrameEncoder]) -> None:
    """At alpha 0 the API ranks its pool by MaxSim alone; a pool of every frame makes that the
    exhaustive patch scoring computed here from the checkpoints."""
    work, library, encoder = indexed
    ceiling = exhaustive_rankings(work / "checkpoints", text_vectors(encoder, [q.caption for q in library.queries]))
    with serving(work, encoder, library.queries, rerank_pool=SPEC.frames) as base:
        [run] = query_service(base, library.queries, modes=("rerank_alpha0",)).values()
    for q, api, exact in zip(library.queries, run.rankings, ceiling):
        assert recall_at(api, q.relevant, K) == recall_at(exact, q.relevant, K), (q.caption, api, exact)
        assert len(set(api) & set(exact)) >= K - 1, (q.caption, api, exact)  # near-equal scores may swap at rank 10


def test_the_default_keeps_small_objects_from_the_patches_and_large_ones_from_the_whole_frame(indexed: tuple[Path, Library, FrameEncoder]) -> None:
    """Issue 19's acceptance, at the size CI affords: with a global pool of 48 frames (10% of the
    library), candidates must come from the patches. At the API's defaults (alpha 0.5, bestview
    fusion) small objects keep >= 0.9 of the exhaustive patch ceiling, and large objects >= 0.9 of
    global search's recall - the two the seed's weighted sum could not hold at any alpha (README
    "Retrieval quality"). alpha 0 (MaxSim alone) must reach the ceiling too: the candidates hold
    the needles."""
    work, library, encoder = indexed
    ceiling = exhaustive_rankings(work / "checkpoints", text_vectors(encoder, [q.caption for q in library.queries]))
    exhaustive = scores(ceiling, library.queries, "small")["recall_at_10"]
    with serving(work, encoder, library.queries, rerank_pool=48) as base:
        runs = query_service(base, library.queries, modes=("global", "rerank", "rerank_alpha0"))
    small = {mode: scores(run.rankings, library.queries, "small")["recall_at_10"] for mode, run in runs.items()}
    large = {mode: scores(run.rankings, library.queries, "large")["recall_at_10"] for mode, run in runs.items()}
    assert exhaustive >= 0.5, (small, exhaustive)  # a measuring stick that can judge anything
    assert small["rerank_alpha0"] >= 0.9 * exhaustive, (small, exhaustive)
    assert small["rerank"] >= 0.9 * exhaustive, (small, exhaustive)
    assert large["rerank"] >= 0.9 * large["global"], (large, small)
