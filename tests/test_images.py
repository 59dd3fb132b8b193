"""Images as the captioner sees them: encoded bytes decoded in the graph (`model/images.py`),
the same function in training and in the export."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from model.images import decode_image, decode_images

RED, WHITE, BLACK = (1.0, 0.0, 0.0), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)


def encoded(image: Image.Image, format: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, format=format, **options)
    return out.getvalue()


def decoded(data: bytes, size: int = 16) -> np.ndarray:
    return decode_image(tf.constant(data), size).numpy()


def test_transparency_is_painted_over_white():
    image = Image.new("RGBA", (16, 16), (0, 0, 0, 0))  # transparent black
    image.paste((255, 0, 0, 255), (4, 4, 12, 12))  # an opaque red square
    pixels = decoded(encoded(image, "PNG"))
    assert pixels.shape == (16, 16, 3) and pixels.dtype == np.float32
    np.testing.assert_allclose(pixels[0, 0], WHITE, atol=1e-6)
    np.testing.assert_allclose(pixels[8, 8], RED, atol=1e-6)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGB"])
def test_every_png_mode_comes_out_rgb(mode):
    image = Image.new("RGB", (16, 16), (0, 0, 0)).convert(mode)
    pixels = decoded(encoded(image, "PNG"))
    np.testing.assert_allclose(pixels[5, 5], BLACK, atol=1e-6)


def test_grey_jpeg_comes_out_rgb():
    pixels = decoded(encoded(Image.new("L", (16, 16), 128), "JPEG"))
    np.testing.assert_allclose(pixels[8, 8], [128 / 255] * 3, atol=0.02)


def test_an_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    data = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:])
    np.testing.assert_allclose(decoded(data)[8, 8], RED, atol=0.02)


def test_a_wide_image_keeps_its_shape_centred_on_white():
    pixels = decoded(encoded(Image.new("RGB", (32, 16), (0, 0, 0)), "PNG"))
    np.testing.assert_allclose(pixels[:3].reshape(-1, 3), [WHITE] * 48, atol=1e-6)  # margins
    np.testing.assert_allclose(pixels[6:10].reshape(-1, 3), [BLACK] * 64, atol=1e-6)
    np.testing.assert_allclose(pixels[-3:].reshape(-1, 3), [WHITE] * 48, atol=1e-6)


def test_a_batch_mixes_sizes_and_formats():
    batch = [encoded(Image.new("RGB", (40, 30), (255, 0, 0)), "JPEG", quality=95),
             encoded(Image.new("RGBA", (8, 8), (0, 0, 0, 0)), "PNG")]
    pixels = decode_images(tf.constant(batch), 16).numpy()
    assert pixels.shape == (2, 16, 16, 3)
    np.testing.assert_allclose(pixels[0, 8, 8], RED, atol=0.03)
    np.testing.assert_allclose(pixels[1, 8, 8], WHITE, atol=1e-6)


@pytest.mark.parametrize("size", [(1, 200), (2000, 3)])
def test_however_thin_an_image_it_decodes_to_the_square(size):
    pixels = decoded(encoded(Image.new("RGB", size, (255, 0, 0)), "PNG"), 64)
    assert pixels.shape == (64, 64, 3)
    red = np.isclose(pixels, RED, atol=0.05).all(axis=-1)
    assert red.any() and not red.all()  # a red line on white
    np.testing.assert_allclose(pixels[0, 0], WHITE, atol=1e-6)
