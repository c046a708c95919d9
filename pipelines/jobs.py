"""The code location's job: ``video_pipeline``, the three per-video assets as one step per run."""

import dagster as dg

from assets.videos import ASSETS

video_pipeline = dg.define_asset_job(
    "video_pipeline",
    selection=dg.AssetSelection.assets(*ASSETS),
    # One process per run, one step: a run costs about the code location's load plus its work
    # (the multiprocess executor started a process per step, each importing torch again).
    executor_def=dg.in_process_executor,
    description="Manifest, embeddings checkpoint and index sync of the selected videos, each video on its own.",
)
