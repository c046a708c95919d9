"""Sliding-window patch planning: which regions of a frame get their own embedding.

Pure functions over image sizes; the encoder cuts the planned boxes, the index stores them, and
the search service plans a query image's patches with the very same settings.

Per scale ``s`` the core window is ``round(window * s)`` pixels square and windows start every
``round(stride * s)`` pixels. Unlike the seed, the last window on each axis is placed flush with
the right/bottom edge, so every patch is a full window (the seed produced slivers such as a
16x72 patch on 1080p). Each core window grows by ``round(context_pad * side)`` on every side to
give the encoder context; that padded box is what gets embedded. Where the padded box would
cross the image edge it is *shifted* back inside rather than cut: every padded box of one scale
then has the same square size, so a crop is never squashed out of aspect when resized to the
model's square input, and all crops of one scale can be cut from a single resized frame.

When two windows' padded boxes coincide (the last two windows of an axis often do once shifted),
the pixels are embedded once and that patch's core box is the union of both cores.

Patch counts at the defaults (window 224, stride 112, context 0.15, one scale):

============  =================  =======
frame         windows (x * y)    patches
============  =================  =======
1280 x 720    11 x 6             66
1920 x 1080   17 x 9 = 153       144
3840 x 2160   34 x 19 = 646      594
============  =================  =======
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PATCH_MODES: tuple[str, ...] = ("crops", "dense")


@dataclass(frozen=True)
class PatchConfig:
    """Patch settings; the env var named on each field configures it (see ``resources.settings``)."""

    window: int = 224  # PATCH_WINDOW: core window side in pixels at scale 1.0
    stride: int = 112  # PATCH_STRIDE: step between windows at scale 1.0 (112 = 50% overlap)
    context_pad: float = 0.15  # PATCH_CONTEXT_PAD: padding on each side, fraction of the window
    scales: tuple[float, ...] = (1.0,)  # PATCH_SCALES: window multipliers, concatenated in order
    max_patches: int | None = None  # MAX_PATCHES_PER_IMAGE: uniform subsample above this count
    # PATCH_MODE: how a window becomes a vector - "crops" (one model pass per window) or "dense"
    # (one pass per frame, windows read from its feature map; resources.embedding.dense)
    mode: str = "crops"

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"PATCH_WINDOW must be >= 1, got {self.window}")
        if not 1 <= self.stride <= self.window:
            # A stride longer than the window would leave strips of the frame in no patch.
            raise ValueError(f"PATCH_STRIDE must be between 1 and PATCH_WINDOW ({self.window}), got {self.stride}")
        if not 0.0 <= self.context_pad <= 1.0:
            raise ValueError(f"PATCH_CONTEXT_PAD must be in [0, 1], got {self.context_pad}")
        if not self.scales or any(not (s > 0) for s in self.scales):
            raise ValueError(f"PATCH_SCALES must be positive numbers, got {self.scales}")
        if self.max_patches is not None and self.max_patches < 1:
            raise ValueError(f"MAX_PATCHES_PER_IMAGE must be >= 1 or unset, got {self.max_patches}")
        if self.mode not in PATCH_MODES:
            raise ValueError(f"PATCH_MODE must be one of {PATCH_MODES}, got {self.mode!r}")

    def fingerprint(self) -> str:
        """A stable string naming these settings; a change of it makes stored patches stale."""
        scales = ",".join(f"{s:g}" for s in self.scales)
        # "crops" adds nothing, so checkpoints made before PATCH_MODE existed stay current.
        mode = "" if self.mode == "crops" else f"-{self.mode}"
        return f"w{self.window}-s{self.stride}-p{self.context_pad:g}-x{scales}-m{self.max_patches or 0}{mode}"


@dataclass(frozen=True)
class PatchPlan:
    """The patches of one frame. Boxes are ``(x, y, w, h)`` in pixels of the original frame."""

    width: int
    height: int
    core: np.ndarray = field(repr=False)  # (patches, 4) int32: the window the patch stands for
    padded: np.ndarray = field(repr=False)  # (patches, 4) int32: core plus context, embedded
    scale: np.ndarray = field(repr=False)  # (patches,) float32: scale the window came from
    mode: str = "crops"  # how the encoder turns these windows into vectors (PatchConfig.mode)

    def __len__(self) -> int:
        return int(self.core.shape[0])


def axis_starts(length: int, window: int, stride: int) -> list[int]:
    """Window start offsets along one axis: every ``stride`` pixels, the last one flush with the end.

    ``length <= window`` gives a single window at 0 (the caller clips it to the image).
    """
    if length <= window:
        return [0]
    return list(range(0, length - window, stride)) + [length - window]


def plan_patches(width: int, height: int, config: PatchConfig = PatchConfig()) -> PatchPlan:
    """Plan the patches of a ``width`` x ``height`` frame; deterministic in its inputs."""
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    core_boxes: list[list[int]] = []
    padded_boxes: list[tuple[int, int, int, int]] = []
    scales: list[float] = []
    index_of: dict[tuple[int, int, int, int], int] = {}
    for scale in config.scales:
        side = max(1, round(config.window * scale))
        step = max(1, round(config.stride * scale))
        # An image smaller than the window is covered by one window clipped to it.
        win_w, win_h = min(side, width), min(side, height)
        pad = round(config.context_pad * max(win_w, win_h))
        for y in axis_starts(height, win_h, step):
            for x in axis_starts(width, win_w, step):
                pad_x, pad_y = _padded_start(x, win_w, pad, width), _padded_start(y, win_h, pad, height)
                padded = (pad_x, pad_y, min(win_w + 2 * pad, width), min(win_h + 2 * pad, height))
                if padded in index_of:
                    # Same pixels embedded twice (small images, coinciding scales): keep one patch
                    # whose core is the union of both cores, so coverage is unchanged.
                    core = core_boxes[index_of[padded]]
                    x0, y0 = min(core[0], x), min(core[1], y)
                    x1, y1 = max(core[0] + core[2], x + win_w), max(core[1] + core[3], y + win_h)
                    core[:] = [x0, y0, x1 - x0, y1 - y0]
                    continue
                index_of[padded] = len(padded_boxes)
                core_boxes.append([x, y, win_w, win_h])
                padded_boxes.append(padded)
                scales.append(scale)

    core_arr = np.asarray(core_boxes, dtype=np.int32).reshape(-1, 4)  # (patches, 4)
    padded_arr = np.asarray(padded_boxes, dtype=np.int32).reshape(-1, 4)  # (patches, 4)
    scale_arr = np.asarray(scales, dtype=np.float32)  # (patches,)
    if config.max_patches is not None and len(core_arr) > config.max_patches:
        keep = uniform_subsample(len(core_arr), config.max_patches)
        core_arr, padded_arr, scale_arr = core_arr[keep], padded_arr[keep], scale_arr[keep]
    return PatchPlan(width, height, core_arr, padded_arr, scale_arr, config.mode)


def uniform_subsample(count: int, keep: int) -> np.ndarray:
    """``keep`` indices spread evenly over ``range(count)``, first and last included."""
    if keep >= count:
        return np.arange(count)
    if keep == 1:
        return np.array([count // 2])
    return np.unique(np.round(np.linspace(0, count - 1, keep)).astype(np.int64))


def _padded_start(start: int, size: int, pad: int, limit: int) -> int:
    """Start of ``[start - pad, start + size + pad)`` shifted (not cut) to lie inside ``[0, limit)``.

    Only when the padded span is longer than the whole axis is it cut, to ``[0, limit)``.
    """
    padded_size = min(size + 2 * pad, limit)
    return min(max(start - pad, 0), limit - padded_size)
