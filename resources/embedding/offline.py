"""The offline model: the small open_clip model trained on the synthetic shapes world, committed
at ``models/framesearch-world``, and the fallback to it when the configured weights cannot be had."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from resources.embedding.encoder import EncoderConfig, FrameEncoder
from resources.embedding.weights import LOCAL_DIR_CONFIG, LOCAL_DIR_PREFIX, WeightsUnavailableError

log = logging.getLogger(__name__)

OFFLINE_MODEL_ENV = "OFFLINE_MODEL_DIR"
# The project is installed editable, so the package sits in the repository: the trained offline
# model committed at <repo>/models/framesearch-world is found from here, whatever the cwd.
BUNDLED_OFFLINE_MODEL = Path(__file__).resolve().parents[2] / "models" / "framesearch-world"


def offline_model_dir(override: str | Path | None = None, env: Mapping[str, str] | None = None) -> Path:
    """Where the offline model lives: ``override``, else $OFFLINE_MODEL_DIR, else the model
    committed with the repository (``models/framesearch-world``)."""
    env = os.environ if env is None else env
    chosen = override or env.get(OFFLINE_MODEL_ENV, "").strip() or BUNDLED_OFFLINE_MODEL
    return Path(chosen).expanduser()


def offline_config(config: EncoderConfig, folder: Path) -> EncoderConfig:
    """``config`` pointed at the offline model in ``folder`` (open_clip's ``local-dir:`` layout)."""
    return replace(config, model=folder.name, pretrained=f"{LOCAL_DIR_PREFIX}{folder}")


def load_encoder_or_offline(config: EncoderConfig, offline_dir: str | Path | None = None) -> tuple[FrameEncoder, str | None]:
    """The configured encoder, or - when its weights cannot be had here - the offline model: the
    small open_clip model trained on the synthetic shapes world (see :func:`offline_model_dir`).
    Returns the encoder and, after a fallback, the reason the configured weights were unavailable.

    Random weights are never a fallback (they are for unit tests): without the offline model this
    raises :class:`WeightsUnavailableError` saying both what failed and what to set.
    """
    try:
        return FrameEncoder.load(config), None
    except WeightsUnavailableError as exc:
        reason = str(exc)
    folder = offline_model_dir(offline_dir)
    if not (folder / LOCAL_DIR_CONFIG).is_file():
        raise WeightsUnavailableError(
            f"the configured weights are unavailable and so is the offline model: no {LOCAL_DIR_CONFIG} in "
            f"{folder} (set {OFFLINE_MODEL_ENV} to the framesearch-world folder, which the repository "
            f"ships at models/framesearch-world). The configured weights: {reason}"
        )
    log.warning("configured weights unavailable, using the offline model in %s: %s", folder, reason)
    return FrameEncoder.load(offline_config(config, folder)), reason
