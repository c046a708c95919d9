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
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

if TYPE_CHECKING:
    from dagster_shared.error import SerializableErrorInfo

# BackfillPolicy is beta in this Dagster; the pipeline uses it on purpose (see assets/videos.py).
warnings.filterwarnings("ignore", category=dg.BetaWarning)

from assets.videos import ASSETS, VIDEOS_PARTITIONS
from pipelines.jobs import video_pipeline
from pipelines.sample_queries import Tally, run_query, summary
from pipelines.samples import SAMPLE_QUERIES, ensure_sample_library, load_ground_truth
from resources.dagster_resources import CheckpointStoreResource, EncoderResource, FrameSourceResource, IndexResource, s3_resource_from_env
from resources.dagster_resources.from_env import generation_locations
from resources.embedding.offline import offline_config, offline_model_dir
from resources.embedding.weights import Provenance, WeightsUnavailableError
from resources.frame_sources import LocalFolderSource
from resources.settings import index_settings_from_env
from resources.vector_index import AGREEMENT_SHARE, DEFAULT_ALPHA, IndexBusyError

TOP_K = 3
RERANK_ALPHA = DEFAULT_ALPHA  # the search service's default rerank_alpha (search_service/schemas.py)
RANDOM_BANNER = (
    "!! RANDOM WEIGHTS: the offline model {model_id} is untrained; its vectors and any search "
    "results built on them carry no meaning. Set OPENCLIP_PRETRAINED to real weights for real use."
)


def _weights_line(provenance: Provenance) -> str:
    """One line naming what the model is and what it knows (random weights get the banner)."""
    accuracy = provenance.details.get("caption_accuracy")
    measured = f" (caption accuracy {accuracy:.2f})" if isinstance(accuracy, (int, float)) else ""
    return f"[main] weights ({provenance.kind}): {provenance.description}{measured}"


def _partition_metadata(result: dg.ExecuteInProcessResult, asset: str, video_id: int) -> dict:
    """What the run recorded for one video's partition of ``asset``; {} if it was not materialized."""
    events = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(asset) and e.partition == str(video_id)]
    return {k: v.value for k, v in events[-1].materialization.metadata.items()} if events else {}


def _failure(result: dg.ExecuteInProcessResult, video_id: int) -> str:
    """Why a video failed: the reason its run recorded on the video's partition."""
    for event in result.all_events:
        if event.event_type_value == "ASSET_OBSERVATION" and event.partition == str(video_id):
            reason = event.asset_observation_data.asset_observation.metadata.get("reason")
            if reason is not None:
                return str(reason.value).split(": ", 1)[-1]  # recorded as text metadata
    errors = [_first_line(e.step_failure_data.error) for e in result.all_events if e.is_step_failure]
    return " | ".join(errors) or "no reason recorded"


def _first_line(error: SerializableErrorInfo | None) -> str:
    return error.message.strip().splitlines()[0] if error is not None else "no error recorded"


def _runs(instance: dg.DagsterInstance, keys: list[str]) -> list[dict[str, str]]:
    """Run tags covering ``keys``: one run of them all when they are one contiguous range of the
    instance's ``videos`` partitions (the model loads once), else one run per video."""
    registered = instance.get_dynamic_partitions(VIDEOS_PARTITIONS)
    if keys and keys[0] in registered:
        start = registered.index(keys[0])
        if registered[start : start + len(keys)] == keys:
            return [{"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]}]
    return [{"dagster/partition": key} for key in keys]


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

    # Library warnings (the encoder's fallback notice, once) in the same style as the job's lines.
    logging.basicConfig(level=logging.WARNING, format="[%(name)s] %(message)s")
    videos = args.videos or ensure_sample_library(args.var / "samples")
    if args.offline_model:
        offline = offline_config(EncoderResource().config(), offline_model_dir())
        encoder = EncoderResource(model=offline.model, pretrained=offline.pretrained)
    else:
        encoder = EncoderResource(offline_fallback=True)
    # INDEX_GENERATION (./dev generations plan): fill that generation beside the base one.
    checkpoints, collection = generation_locations(str(args.var / "checkpoints"), index_settings_from_env().collection)
    index = IndexResource(path=os.environ.get("QDRANT_PATH") or str(args.var / "qdrant"), collection=collection)
    resources = {
        "encoder": encoder,
        "frames": FrameSourceResource(root=str(videos), fps=args.fps, s3=s3_resource_from_env()),
        "store": CheckpointStoreResource(root=checkpoints),
        "index": index,
    }
    try:
        frame_encoder = encoder.encoder  # loaded once here to report it; the runs reuse it
    except WeightsUnavailableError as exc:
        print(f"[main] no model to run: {exc}")
        return 2
    info = frame_encoder.info
    print(f"[main] model {info.model_id} on {info.device} ({info.precision}), dim {info.embed_dim}")
    # A fallback to the offline model was said once already, by the encoder's log line above.
    if info.weights_random:
        print(RANDOM_BANNER.format(model_id=info.model_id))
    else:
        print(_weights_line(info.provenance))

    listings = LocalFolderSource(videos, fps=args.fps).list_videos()
    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()
    keys = [str(v.video_id) for v in listings]
    instance.add_dynamic_partitions(VIDEOS_PARTITIONS, [k for k in keys if not instance.has_dynamic_partition(VIDEOS_PARTITIONS, k)])
    # The code location's job, in this process: its runs show as video_pipeline in the UI.
    job = dg.Definitions(assets=ASSETS, jobs=[video_pipeline], resources=resources).resolve_job_def(video_pipeline.name)
    failures, deferred = 0, 0
    for tags in _runs(instance, keys):
        result = job.execute_in_process(
            instance=instance, tags=tags, raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},  # runs' own logs stay in Dagster
        )
        covered = [tags["dagster/partition"]] if "dagster/partition" in tags else keys  # a range run covers them all
        for video_id in map(int, covered):
            embed, synced = _partition_metadata(result, "frame_embeddings", video_id), _partition_metadata(result, "index_sync", video_id)
            if not embed or not synced:
                failures += 1
                print(f"[main] video {video_id}: FAILED: {_failure(result, video_id)[:500]}")
                continue
            for frame_id, reason in (embed.get("skipped") or {}).items():
                print(f"[main] video {video_id}: skipped frame {frame_id}: {reason}")
            if synced.get("deferred"):
                deferred += 1
                note = "index: deferred to the process holding it"
            elif synced.get("unchanged"):
                note = "index: unchanged"
            else:
                note = f"index: {synced.get('upserted')} upserted, {synced.get('deleted')} deleted"
            speed = "up to date" if embed["up_to_date"] else f"{embed['frames_per_s']} frames/s"
            print(
                f"[main] video {video_id}: {embed['frames']} frames, {embed['patches']} patches, "
                f"{embed['frames_skipped']} skipped, {speed} -> {embed['checkpoint']}; {note}"
            )

    settings = index.settings()
    try:
        with index.open(info.embed_dim) as opened:
            print(f"[main] index ({opened.mode}, collection {settings.collection}): {opened.count()} frames")
            truth = load_ground_truth(videos)
            print(
                f"[main] sample queries: top {TOP_K} by global search and by MaxSim rerank of the candidates from global and patch search "
                f"(score at alpha {RERANK_ALPHA}: the better of the global and the best patch cosine, plus {AGREEMENT_SHARE * RERANK_ALPHA:.1%} of each; "
                f"0: best patch alone); ✓/✗ the frame holds the object or not (ground truth)"
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
    if not info.weights_random and info.provenance.kind == "synthetic-world":
        print(_weights_line(info.provenance))  # the rankings above are of a toy model: say so again
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
