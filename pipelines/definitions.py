"""The Dagster code location: what ``dagster dev -w workspace.yaml`` loads."""

from __future__ import annotations

import dagster as dg

from assets.sample_library import library_checkpoints
from resources.encoder_resource import EncoderResource

defs = dg.Definitions(
    assets=[library_checkpoints],
    resources={"encoder": EncoderResource(offline_fallback=True)},
)
