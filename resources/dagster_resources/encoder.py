"""The encoder as a Dagster resource: configured from the environment, loaded once per run."""


from dataclasses import replace
from typing import Any

import dagster as dg
import torch
from pydantic import PrivateAttr

from resources.embedding.encoder import EncoderConfig, FrameEncoder
from resources.embedding.offline import load_encoder_or_offline, offline_config, offline_model_dir
from resources.embedding.weights import WeightsUnavailableError, resolve_weights, weights_model_id
from resources.settings import encoder_config_from_env, run_threads_from_env

_LOADED: dict[tuple[EncoderConfig, bool, str | None], tuple[FrameEncoder, str | None]] = {}


class EncoderResource(dg.ConfigurableResource):
    """OpenCLIP frame encoder. Unset fields come from OPENCLIP_* / BATCH_SIZE / GLOBAL_RESIZE_MODE /
    PATCH_CROP_METHOD in the environment (the code location fills them all in, so the UI shows them).

    With ``offline_fallback`` set, a machine that cannot obtain the configured weights runs the
    offline model (trained on the synthetic shapes world; ``offline_model_dir``, default
    $OFFLINE_MODEL_DIR or the repository's ``models/framesearch-world``) instead of failing, and
    every materialization says which model it used and what it knows.
    """

    model: str | None = None
    pretrained: str | None = None
    batch_size: int | None = None
    device: str | None = None
    precision: str | None = None
    global_resize: str | None = None  # GLOBAL_RESIZE_MODE
    crop_method: str | None = None  # PATCH_CROP_METHOD
    offline_fallback: bool = False
    offline_model_dir: str | None = None  # None: $OFFLINE_MODEL_DIR, else <repo>/models/framesearch-world

    _encoder: FrameEncoder | None = PrivateAttr(default=None)
    _fallback_reason: str | None = PrivateAttr(default=None)

    def config(self) -> EncoderConfig:
        overrides: dict[str, Any] = {
            name: value
            for name in ("model", "pretrained", "batch_size", "device", "precision", "global_resize", "crop_method")
            if (value := getattr(self, name)) is not None
        }
        return replace(encoder_config_from_env(), **overrides)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Dagster builds a fresh resource object for every run; the model is loaded once per
        # process and configuration (the main job and its runs, several in-process runs) and its
        # fallback warning is logged once with it.
        key = (self.config(), self.offline_fallback, str(offline_model_dir(self.offline_model_dir)) if self.offline_fallback else None)
        threads = run_threads_from_env()
        if threads is not None and threads != torch.get_num_threads():
            # This run shares the cores with the queue's other runs (FRAMESEARCH_MAX_CONCURRENT_RUNS).
            if context.log is not None:
                context.log.info(f"encoder: {threads} CPU threads (the cores shared by FRAMESEARCH_MAX_CONCURRENT_RUNS runs)")
            torch.set_num_threads(threads)
        if key not in _LOADED:
            if self.offline_fallback:
                _LOADED[key] = load_encoder_or_offline(self.config(), self.offline_model_dir)
            else:
                _LOADED[key] = (FrameEncoder.load(self.config()), None)
        self._encoder, self._fallback_reason = _LOADED[key]

    @property
    def encoder(self) -> FrameEncoder:
        if self._encoder is None:  # used outside a run (e.g. in a unit test): load on demand
            self.setup_for_execution(dg.build_init_resource_context())
        assert self._encoder is not None
        return self._encoder

    def expected_model_id(self) -> str | None:
        """The model id a run would embed with, without loading the model (for staleness
        checks); None when the weights are unavailable and there is no fallback."""
        config = self.config()
        try:
            return weights_model_id(resolve_weights(config.model, config.pretrained))
        except WeightsUnavailableError:
            if not self.offline_fallback:
                return None
        offline = offline_config(config, offline_model_dir(self.offline_model_dir))
        try:
            return weights_model_id(resolve_weights(offline.model, offline.pretrained))
        except WeightsUnavailableError:
            return None  # no offline model either: a run would fail, nothing to compare with

    @property
    def fallback_reason(self) -> str | None:
        """Why the configured weights were not used, when the offline model stands in for them."""
        return self._fallback_reason
