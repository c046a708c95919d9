"""Decode untrusted image bytes into RGB pictures, the one way the pipeline and the service do it.

Every failure mode (empty, truncated, corrupt, not an image, too many pixels) raises
:class:`ImageDecodeError` with a human-readable ``reason``; nothing here returns a silently
black or white frame. Conversions that Pillow gets wrong by default (16-bit and float images,
which ``Image.convert("RGB")`` clips to white) are done explicitly.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

# 64 megapixels: an 8K frame (33 MP) passes, a crafted 100k x 100k PNG does not.
DEFAULT_MAX_PIXELS = 64_000_000

# Transparent pixels are composited onto white: product shots and logos are drawn for a white page.
ALPHA_BACKGROUND = (255, 255, 255)


class ImageDecodeError(ValueError):
    """Bytes that cannot become an RGB picture; ``reason`` says why in words a person can act on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ImageTooLargeError(ImageDecodeError):
    """The image declares more pixels than the configured limit (decompression-bomb guard)."""


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode ``data`` into an 8-bit RGB image with its EXIF orientation applied.

    The pixel limit is checked from the header, before any pixel is decompressed.
    """
    if not data:
        raise ImageDecodeError("empty input: 0 bytes")
    try:
        with warnings.catch_warnings():
            # Pillow warns (and later raises) against its own global limit; ours is checked below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageTooLargeError(
                    f"image is {width}x{height} = {width * height:,} pixels, "
                    f"over the limit of {max_pixels:,} (MAX_IMAGE_PIXELS)"
                )
            image.load()
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as exc:
        # Pillow's own guard (2x its MAX_IMAGE_PIXELS) fired first, still from the header alone.
        raise ImageTooLargeError(f"image is over the limit of Pillow's decompression-bomb guard: {exc}") from exc
    except UnidentifiedImageError as exc:
        # Reasons reach HTTP clients and job results: they must not quote the data (the first bytes
        # of a non-image object are often a secret: "export AWS_SECRET...").
        raise ImageDecodeError(f"not a recognized image format ({len(data):,} bytes)") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow reports truncation and corrupt streams as OSError/SyntaxError/EOFError. Its messages
        # can quote the data ("invalid literal for int() with base 10: b'SECRET'"): the class only.
        raise ImageDecodeError(f"corrupt or truncated image data ({type(exc).__name__})") from exc

    if width == 0 or height == 0:
        raise ImageDecodeError(f"image has no pixels ({width}x{height})")
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - a malformed EXIF block must not reject good pixels
        pass
    return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB without clipping high-bit-depth data."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return Image.fromarray(_to_uint8(np.asarray(image), mode), mode="L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    # L, 1, P, CMYK, YCbCr, LAB, HSV: Pillow's own conversions are correct for these.
    return image.convert("RGB")


def _to_uint8(pixels: np.ndarray, mode: str) -> np.ndarray:
    """Scale a single-channel 16-bit, 32-bit integer or float array to uint8 by its mode's range."""
    values = np.nan_to_num(pixels.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    peak = float(values.max(initial=0.0))
    if mode.startswith("I;16"):
        top = 65535.0
    elif mode == "F":
        top = 1.0 if peak <= 1.0 else peak  # float images are 0..1 by convention; else self-scale
    elif peak > 65535:
        top = peak
    else:
        top = 65535.0 if peak > 255 else 255.0  # mode "I": 16-bit PNG/TIFF data or plain 8-bit
    return np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8)


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB Pillow image as a ``(3, H, W)`` uint8 tensor sharing no memory with Pillow."""
    if image.mode != "RGB":
        image = to_rgb(image)
    array = np.array(image, dtype=np.uint8, copy=True)  # (H, W, 3)
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()  # (3, H, W)
