"""The Dagster code location - what ``dagster dev -w workspace.yaml`` loads.

Resources take their settings from the environment when the location loads
(:func:`resources.dagster_resources.pipeline_resources_from_env`: FRAMES_ROOT, CHECKPOINT_DIR,
OPENCLIP_*, QDRANT_*, S3_* ...); the resource pages show the values in use, secrets stay
``dg.EnvVar`` references. Runs execute in one process, one step per run (``pipelines/jobs.py``).
"""

import dagster as dg

from assets.videos import ASSETS
from pipelines.automation import reconcile_schedule, video_event_sensor, video_pipeline, video_sensor
from pipelines.generations import switch_generation
from resources.dagster_resources import pipeline_resources_from_env

defs = dg.Definitions(
    assets=ASSETS,
    executor=dg.in_process_executor,
    jobs=[video_pipeline, switch_generation],
    sensors=[video_sensor, video_event_sensor],
    schedules=[reconcile_schedule],
    resources=pipeline_resources_from_env(),
)
