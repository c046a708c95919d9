"""Image decoding: every mode converted correctly, every bad input rejected with a reason."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from resources.frame_sources.images import ImageDecodeError, ImageTooLargeError, decode_image, image_to_tensor


def encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def pixel(image: Image.Image, xy: tuple[int, int] = (4, 4)) -> tuple[int, int, int]:
    assert image.mode == "RGB"
    return image.getpixel(xy)  # type: ignore[return-value]


def close(a: tuple[int, ...], b: tuple[int, ...], tol: int = 3) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b))


# -- conversions ---------------------------------------------------------------------------


def test_rgb_png_round_trips_exact_colours() -> None:
    source = Image.new("RGB", (16, 8), (200, 30, 60))
    out = decode_image(encode(source))
    assert out.size == (16, 8) and pixel(out) == (200, 30, 60)


def test_rgb_jpeg_keeps_colour() -> None:
    out = decode_image(encode(Image.new("RGB", (32, 32), (255, 0, 0)), "JPEG", quality=95))
    assert close(pixel(out), (255, 0, 0), tol=4)


def test_grayscale_becomes_equal_channels() -> None:
    out = decode_image(encode(Image.new("L", (8, 8), 77)))
    assert pixel(out) == (77, 77, 77)


def test_bilevel_mode_1() -> None:
    source = Image.new("1", (8, 8), 1)
    assert pixel(decode_image(encode(source))) == (255, 255, 255)


def test_palette_image_uses_palette_colours() -> None:
    source = Image.new("RGB", (8, 8), (10, 200, 30)).convert("P", palette=Image.Palette.ADAPTIVE)
    assert source.mode == "P"
    assert close(pixel(decode_image(encode(source))), (10, 200, 30))


def test_palette_transparency_composited_on_white() -> None:
    source = Image.new("P", (8, 8), 0)
    source.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    source.putpixel((0, 0), 1)
    data = encode(source, transparency=0)  # index 0 (black) is transparent
    out = decode_image(data)
    assert pixel(out, (4, 4)) == (255, 255, 255)  # transparent -> white, not black
    assert pixel(out, (0, 0)) == (255, 0, 0)


@pytest.mark.parametrize("alpha, expected", [(0, (255, 255, 255)), (255, (0, 0, 200)), (128, (127, 127, 227))])
def test_rgba_alpha_composited_on_white(alpha: int, expected: tuple[int, int, int]) -> None:
    out = decode_image(encode(Image.new("RGBA", (8, 8), (0, 0, 200, alpha))))
    assert close(pixel(out), expected, tol=2)


def test_grayscale_with_alpha() -> None:
    out = decode_image(encode(Image.new("LA", (8, 8), (0, 0))))
    assert pixel(out) == (255, 255, 255)


def test_cmyk_jpeg_converted_to_rgb() -> None:
    cyan = Image.new("CMYK", (16, 16), (255, 0, 0, 0))
    out = decode_image(encode(cyan, "JPEG", quality=95))
    r, g, b = pixel(out)
    assert r < 30 and g > 225 and b > 225


def test_16bit_grayscale_png_is_scaled_not_clipped() -> None:
    # Pillow's own convert("RGB") clips 16-bit values to 255: mid-grey would come out white.
    mid = Image.fromarray(np.full((8, 8), 32768, dtype=np.uint16))
    assert mid.mode == "I;16"
    out = decode_image(encode(mid))
    assert close(pixel(out), (128, 128, 128), tol=1)


def test_16bit_dark_image_stays_dark() -> None:
    dark = Image.fromarray(np.full((8, 8), 200, dtype=np.uint16))  # 200/65535: nearly black
    assert pixel(decode_image(encode(dark))) == (1, 1, 1)


def test_32bit_integer_tiff() -> None:
    source = Image.fromarray(np.full((8, 8), 65535, dtype=np.int32), mode="I")
    assert pixel(decode_image(encode(source, "TIFF"))) == (255, 255, 255)


def test_float_tiff_in_unit_range() -> None:
    source = Image.fromarray(np.full((8, 8), 0.5, dtype=np.float32), mode="F")
    assert close(pixel(decode_image(encode(source, "TIFF"))), (128, 128, 128), tol=1)


def test_exif_orientation_applied() -> None:
    source = Image.new("RGB", (20, 10), (0, 0, 255))
    source.paste((255, 0, 0), (0, 0, 10, 10))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    out = decode_image(encode(source, "JPEG", quality=95, exif=exif.tobytes()))
    assert out.size == (10, 20)
    assert close(pixel(out, (5, 2)), (255, 0, 0), tol=40)  # red half now on top
    assert close(pixel(out, (5, 17)), (0, 0, 255), tol=40)


def test_animated_gif_takes_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    assert close(pixel(decode_image(buffer.getvalue())), (255, 0, 0))


def test_webp() -> None:
    assert close(pixel(decode_image(encode(Image.new("RGB", (8, 8), (9, 99, 199)), "WEBP", lossless=True))), (9, 99, 199))


def test_image_to_tensor_layout() -> None:
    image = Image.new("RGB", (5, 3), (1, 2, 3))
    tensor = image_to_tensor(image)
    assert tuple(tensor.shape) == (3, 3, 5) and tensor.dtype.is_floating_point is False
    assert tensor[:, 0, 0].tolist() == [1, 2, 3]


# -- bad inputs ----------------------------------------------------------------------------


def test_empty_bytes() -> None:
    with pytest.raises(ImageDecodeError, match="empty"):
        decode_image(b"")


def test_not_an_image() -> None:
    with pytest.raises(ImageDecodeError, match="not a recognized image format") as info:
        decode_image(b"<html>404 not found</html>")
    assert info.value.reason


def test_truncated_jpeg() -> None:
    data = encode(Image.new("RGB", (256, 256), (50, 100, 150)), "JPEG")
    with pytest.raises(ImageDecodeError, match="truncated|corrupt"):
        decode_image(data[: len(data) // 2])


def test_truncated_png() -> None:
    rng = np.random.default_rng(0)
    data = encode(Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)))
    with pytest.raises(ImageDecodeError):
        decode_image(data[: len(data) - 200])


def test_corrupt_body_with_valid_header() -> None:
    data = bytearray(encode(Image.new("RGB", (64, 64), (1, 2, 3))))
    data[60:] = bytes(len(data) - 60)  # keep the signature and IHDR, zero the rest
    with pytest.raises(ImageDecodeError):
        decode_image(bytes(data))


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` but carries almost no pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def test_decompression_bomb_rejected_from_header() -> None:
    with pytest.raises(ImageTooLargeError, match="over the limit"):
        decode_image(_png_header_only(100_000, 100_000))  # 10 gigapixels, a few bytes on the wire


def test_configurable_pixel_limit() -> None:
    data = encode(Image.new("RGB", (100, 100)))
    with pytest.raises(ImageTooLargeError, match="10,000 pixels"):
        decode_image(data, max_pixels=9_999)
    assert decode_image(data, max_pixels=10_000).size == (100, 100)


def test_errors_are_value_errors_with_reason() -> None:
    with pytest.raises(ValueError) as info:
        decode_image(b"\x00" * 100)
    assert isinstance(info.value, ImageDecodeError) and "image" in info.value.reason
