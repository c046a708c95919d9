"""The ``switch_generation`` job: cut over to another embedding generation, or roll back, from the
Dagster UI (Jobs -> switch_generation -> Launchpad), as ``./dev generations`` does from a shell.

It acts on the deployment's base settings (QDRANT_* and CHECKPOINT_DIR; INDEX_GENERATION, the
generation this deployment's runs fill, does not change which pointer it moves). A cut-over is
refused while the generation does not cover the active one, unless ``force``.
"""

import dagster as dg

from resources.generations.deployment import base_generation, opener, pointer_for
from resources.generations.switch import SwitchRefused, cut_over, rollback
from resources.settings import index_settings_from_env


class SwitchGenerationConfig(dg.Config):
    """``to``: the generation to make active (``generations status`` lists them); or ``rollback``."""

    to: str = ""
    rollback: bool = False
    force: bool = False


@dg.op(description="Point the service at another embedding generation (or back at the previous one).")
def switch_generation_op(context: dg.OpExecutionContext, config: SwitchGenerationConfig) -> dg.Output[str]:
    settings = index_settings_from_env()
    pointer = pointer_for(settings)
    try:
        if config.rollback:
            state = rollback(pointer)
        elif config.to:
            state = cut_over(pointer, base_generation(settings), config.to, opener(settings), force=config.force)
        else:
            raise dg.Failure("give `to` (a generation) or `rollback: true`")
    except SwitchRefused as exc:
        raise dg.Failure(f"switch refused: {exc}") from exc
    context.log.info(f"active generation: {state.active} (previous: {state.previous})")
    return dg.Output(state.active, metadata={"active": state.active, "previous": state.previous or "-"})


@dg.job(description="Cut over to another embedding generation, or roll back (resources/generations).")
def switch_generation() -> None:
    switch_generation_op()
