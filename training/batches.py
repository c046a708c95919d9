"""Training batches: world images made on the fly, normalized like the encoder's input."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from training.config import TrainConfig
from training.examples import EXAMPLE_KINDS, planned_crops, training_example


def to_model_input(images: np.ndarray, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``(B, S, S, 3)`` uint8 -> ``(B, 3, S, S)`` normalized float32, as the encoder normalizes."""
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0  # (B, 3, S, S)
    return (pixels - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)


def soften(batch: torch.Tensor, prob: float, gen: torch.Generator) -> torch.Tensor:
    """Blur a random ``prob`` share of the images with a 3x3 binomial kernel (in place of a resize)."""
    if prob <= 0:
        return batch
    chosen = torch.rand(batch.shape[0], generator=gen) < prob  # (B,)
    if not chosen.any():
        return batch
    k = torch.tensor([1.0, 2.0, 1.0])
    kernel = (k[:, None] * k[None, :] / 16.0).expand(3, 1, 3, 3)  # (3, 1, 3, 3) depthwise
    batch = batch.clone()
    batch[chosen] = F.conv2d(F.pad(batch[chosen], (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
    return batch


def make_batch(
    size: int, count: int, rng: np.random.Generator, mix: tuple[float, ...] = (0.6, 0.15, 0.15, 0.1)
) -> tuple[np.ndarray, torch.Tensor]:
    """``count`` training examples: images ``(count, size, size, 3)`` uint8 and labels ``(count,)``;
    ``mix`` gives the shares of the kinds in ``EXAMPLE_KINDS`` (crop, single, frame, background,
    planned; a mix of four leaves planned out). Planned slots are filled with every crop of as
    many frames as they take, so a frame's target and its look-alike distractors share a batch."""
    mix = full_mix(mix)
    p = np.asarray(mix, dtype=np.float64) / sum(mix)
    kinds = [EXAMPLE_KINDS[int(k)] for k in rng.choice(len(EXAMPLE_KINDS), size=count, p=p)]
    planned: list[tuple[np.ndarray, int]] = []
    while len(planned) < kinds.count("planned"):
        planned += planned_crops(size, rng)
    drawn = iter(planned)
    pairs = [next(drawn) if kind == "planned" else training_example(size, rng, kind=kind) for kind in kinds]  # type: ignore[arg-type]
    images = np.stack([image for image, _ in pairs])  # (count, size, size, 3)
    labels = torch.tensor([label for _, label in pairs], dtype=torch.long)  # (count,) -1 = no object
    return images, labels


def parse_mix(text: str) -> tuple[float, ...]:
    """``"0.6,0.15,0.15,0.1[,0.3]"`` -> shares of ``EXAMPLE_KINDS`` (see :func:`full_mix`)."""
    return full_mix(tuple(float(x) for x in text.split(",")))


def full_mix(mix: tuple[float, ...]) -> tuple[float, ...]:
    """Shares of every kind in ``EXAMPLE_KINDS``, checked; without a fifth, planned is 0: the mixes
    of models trained before planned crops existed still mean what they meant."""
    if len(mix) == len(EXAMPLE_KINDS) - 1:
        mix += (0.0,)
    if len(mix) != len(EXAMPLE_KINDS) or min(mix) < 0 or sum(mix) <= 0:
        raise ValueError(f"a mix gives {len(EXAMPLE_KINDS)} non-negative shares ({', '.join(EXAMPLE_KINDS)}), got {','.join(map(str, mix))!r}")
    return mix


class WorldBatches(torch.utils.data.IterableDataset):
    """Endless ``(images (B, S, S, 3) uint8, labels (B,))`` batches from one seeded generator.

    Iterated inline by default. A single DataLoader worker (``--data-workers 1``) gives the same
    sequence, but on 2 cores it slowed training 2.5x here (the worker and torch's two threads fight
    for the cores), so it is only worth it with cores to spare.
    """

    def __init__(self, size: int, config: TrainConfig) -> None:
        self.size, self.config = size, config

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        torch.set_num_threads(1)
        config = self.config
        rng = np.random.default_rng(config.seed)
        warm_steps = round(config.warm_frac * config.steps)
        warm_mix, mix = parse_mix(config.warm_mix), parse_mix(config.mix)
        step = 0
        while True:
            images, labels = make_batch(self.size, config.batch_size, rng, warm_mix if step < warm_steps else mix)
            step += 1
            yield torch.from_numpy(images), labels


def batch_stream(config: TrainConfig, size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The training batches, made in a worker process when ``config.data_workers`` is 1."""
    dataset = WorldBatches(size, config)
    if config.data_workers == 0:
        return iter(dataset)
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=1, prefetch_factor=4)
    return iter(loader)
