"""The README's main job: the whole pipeline on the embedded defaults, then sample queries.

``python -m pipelines.main`` (what ``./dev main`` runs) builds the sample library, registers one
``videos`` partition per video and materializes the Dagster assets for each - frame manifest,
embeddings checkpoint, index sync - on a local Dagster instance (``$DAGSTER_HOME`` if set, so the
runs show in the UI; else a throwaway one). It loads the configured OpenCLIP model or, when its
weights cannot be had on this machine, the offline model (a small open_clip model trained on
framesearch's synthetic shapes world, ``models/framesearch-world``), saying what it knows. Then it
runs the sample queries - captions of the synthetic world - against the index (embedded Qdrant
Edge under ``var/qdrant/`` unless QDRANT_URL is set): global search and MaxSim rerank side by side,
each hit judged by the sample library's ground truth, with the reranked hits' best patch boxes
(``pipelines/sample_queries.py``).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

import dagster as dg

# BackfillPolicy is beta in this Dagster; the pipeline uses it on purpose (see assets/videos.py).
warnings.filterwarnings("ignore", category=dg.BetaWarning)

from assets.videos import frame_embeddings, frame_manifest, index_sync, videos_partitions
from pipelines.sample_queries import Tally, run_query, summary
from pipelines.samples import SAMPLE_QUERIES, ensure_sample_library, load_ground_truth
from resources.clip_loader import Provenance, WeightsUnavailableError
from resources.encoder import offline_config, offline_model_dir
from resources.encoder_resource import EncoderResource
from resources.frame_sources import LocalFolderSource
from resources.index_schema import IndexSchema
from resources.pipeline_resources import CheckpointStoreResource, FrameSourceResource, IndexResource, s3_resource_from_env
from resources.vector_index import IndexBusyError, VectorIndex

TOP_K = 3
RERANK_ALPHA = 0.5  # the search service's default rerank_alpha (search_service/schemas.py)
RANDOM_BANNER = (
    "!! RANDOM WEIGHTS: the offline model {model_id} is untrained; its vectors and any search "
    "results built on them carry no meaning. Set OPENCLIP_PRETRAINED to real weights for real use."
)


def _weights_line(provenance: Provenance) -> str:
    """One line naming what the model is and what it knows (random weights get the banner)."""
    accuracy = provenance.details.get("caption_accuracy")
    measured = f" (caption accuracy {accuracy:.2f})" if isinstance(accuracy, (int, float)) else ""
    return f"[main] weights ({provenance.kind}): {provenance.description}{measured}"


def _metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    events = [e for e in result.get_asset_materialization_events() if e.asset_key.path == [asset]]
    return {k: v.value for k, v in events[-1].materialization.metadata.items()} if events else {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.main", description=__doc__.split("\n\n")[0])
    parser.add_argument("--var", type=Path, default=Path("var"), help="working folder (default ./var)")
    parser.add_argument("--videos", type=Path, help="folder of video folders (default: the sample library)")
    parser.add_argument("--fps", type=float, default=1.0, help="frame rate for videos without a manifest")
    parser.add_argument(
        "--offline-model", action="store_true",
        help="use the offline model (models/framesearch-world, or $OFFLINE_MODEL_DIR) without trying the configured weights",
    )
    parser.add_argument(
        "--query", action="append", metavar="TEXT",
        help="a text query to run instead of the sample captions (repeatable)",
    )
    parser.add_argument(
        "--alpha", type=float, action="append",
        help=f"rerank weight of the global score, 0 to 1; repeatable, one column each "
        f"(default {RERANK_ALPHA}, the service's, and 0: patches only)",
    )
    args = parser.parse_args(argv)
    alphas = tuple(dict.fromkeys(args.alpha or (RERANK_ALPHA, 0.0)))
    if not all(0.0 <= a <= 1.0 for a in alphas):
        parser.error(f"--alpha must be between 0 and 1, got {args.alpha}")

    videos = args.videos or ensure_sample_library(args.var / "samples")
    if args.offline_model:
        offline = offline_config(EncoderResource().config(), offline_model_dir())
        encoder = EncoderResource(model=offline.model, pretrained=offline.pretrained)
    else:
        encoder = EncoderResource(offline_fallback=True)
    index = IndexResource(path=os.environ.get("QDRANT_PATH") or str(args.var / "qdrant"))
    resources = {
        "encoder": encoder,
        "frames": FrameSourceResource(root=str(videos), fps=args.fps, s3=s3_resource_from_env()),
        "store": CheckpointStoreResource(root=str(args.var / "checkpoints")),
        "index": index,
    }
    try:
        frame_encoder = encoder.encoder  # loaded once here to report it; each run loads its own
    except WeightsUnavailableError as exc:
        print(f"[main] no model to run: {exc}")
        return 2
    info = frame_encoder.info
    print(f"[main] model {info.model_id} on {info.device} ({info.precision}), dim {info.embed_dim}")
    if encoder.fallback_reason:
        configured = encoder.config()
        print(f"[main] configured weights {configured.model}/{configured.pretrained} unavailable here: using the offline model")
    if info.weights_random:
        print(RANDOM_BANNER.format(model_id=info.model_id))
    else:
        print(_weights_line(info.provenance))

    listings = LocalFolderSource(videos, fps=args.fps).list_videos()
    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(videos_partitions.name, [str(v.video_id) for v in listings])
    failures, deferred = 0, 0
    for listing in listings:
        result = dg.materialize(
            [frame_manifest, frame_embeddings, index_sync], partition_key=str(listing.video_id),
            instance=instance, resources=resources, raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},  # runs' own logs stay in Dagster
        )
        if not result.success:
            failures += 1
            # The first line of each failed step's error, without the exception's class path.
            errors = [e.event_specific_data.error.message.strip().splitlines()[0].split(": ", 1)[-1] for e in result.all_events if e.is_step_failure]
            print(f"[main] video {listing.video_id}: FAILED: {' | '.join(errors)[:500]}")
            continue
        embed, synced = _metadata(result, "frame_embeddings"), _metadata(result, "index_sync")
        for frame_id, reason in (embed.get("skipped") or {}).items():
            print(f"[main] video {listing.video_id}: skipped frame {frame_id}: {reason}")
        if synced.get("deferred"):
            deferred += 1
            note = "index: deferred to the process holding it"
        elif synced.get("unchanged"):
            note = "index: unchanged"
        else:
            note = f"index: {synced.get('upserted')} upserted, {synced.get('deleted')} deleted"
        print(
            f"[main] video {listing.video_id}: {embed['frames']} frames, {embed['patches']} patches, "
            f"{embed['frames_skipped']} skipped, {embed['frames_per_s']} frames/s -> {embed['checkpoint']}; {note}"
        )

    settings = index.settings()
    try:
        with VectorIndex.open(IndexSchema(settings.collection, info.embed_dim), url=settings.url, path=settings.path, api_key=settings.api_key) as opened:
            print(f"[main] index ({opened.mode}, collection {settings.collection}): {opened.count()} frames")
            truth = load_ground_truth(videos)
            print(
                f"[main] sample queries: top {TOP_K} by global search and by MaxSim rerank of the global candidates "
                f"(score = alpha * global + (1 - alpha) * best patch); ✓/✗ the frame holds the object or not (ground truth)"
            )
            tally = Tally()
            for text in args.query or SAMPLE_QUERIES:
                vector = frame_encoder.encode_texts([text])[0]
                for line in run_query(opened, vector, text, truth, top_k=TOP_K, alphas=alphas, tally=tally):
                    print(line)
            if tally.possible:
                print(summary(tally, TOP_K))
    except IndexBusyError:
        print(f"[main] the embedded index is held by another process ({deferred} videos deferred to it); no sample queries")
    if info.weights_random:
        print(RANDOM_BANNER.format(model_id=info.model_id))
    elif info.provenance.kind == "synthetic-world":  # the rankings above are of a toy model: say so again
        print(_weights_line(info.provenance))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
