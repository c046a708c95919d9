"""Naming conventions of frame files, shared by every frame source.

A frame file is an image (one of :data:`IMAGE_SUFFIXES`, any case) whose name ends in its frame
number: ``frame_000120.jpg`` is frame 120.
"""

from __future__ import annotations

import re
from pathlib import Path

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


def frame_id_from_name(name: str) -> int:
    """The frame number in a file name: the last run of digits (``frame_000120.jpg`` -> 120)."""
    digits = re.findall(r"\d+", Path(name).stem)
    if not digits:
        raise ValueError(f"no frame number in file name {name!r}")
    return int(digits[-1])
