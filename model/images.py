"""Images in the graph: encoded bytes -> the pixels a captioner reads.

Training and the exported captioner decode with the same function, so a client sends
the file as it is (PNG, JPEG, GIF) and the server runs no Python image code on it.
"""

from __future__ import annotations

import tensorflow as tf

FORMATS = ("PNG", "JPEG", "GIF")


def decode_image(data: tf.Tensor, size: int) -> tf.Tensor:
    """[] string, an encoded image -> [size, size, 3] float32 RGB in [0, 1].

    Grey scale becomes RGB; a PNG's transparency is painted over white (emoji and icons
    are drawn on a transparent background, which has no colour of its own; TensorFlow
    decodes GIFs to RGB, their transparent pixels black); an animated GIF gives its
    first frame. The image is scaled to fit `size` x `size` with its aspect ratio
    kept, and centred on white. Undecodable bytes raise InvalidArgumentError, failing the
    whole batch: the server checks every image before it joins one.
    """
    pixels = tf.io.decode_image(data, channels=0, expand_animations=False, dtype=tf.float32)
    channels = tf.shape(pixels)[-1]
    has_alpha = tf.logical_or(tf.equal(channels, 2), tf.equal(channels, 4))
    alpha = tf.where(has_alpha, pixels[..., -1:], 1.0)  # [h, w, 1]
    colour = pixels[..., :channels - tf.cast(has_alpha, tf.int32)]  # [h, w, 1 or 3]
    colour = tf.tile(colour, [1, 1, 3 // tf.shape(colour)[-1]])
    rgb = tf.ensure_shape(colour * alpha + (1.0 - alpha), [None, None, 3])
    # Scaled so its longer side is `size` (its shorter side at least 1 pixel, however
    # thin the image), then centred; padding adds black (0): pad the negative, so the
    # margins come out white.
    sides = tf.cast(tf.shape(rgb)[:2], tf.float32)
    scaled = tf.maximum(1, tf.cast(tf.round(sides * size / tf.reduce_max(sides)), tf.int32))
    negative = tf.image.resize(1.0 - rgb, scaled, antialias=True)
    offset = (size - scaled) // 2
    return 1.0 - tf.image.pad_to_bounding_box(negative, offset[0], offset[1], size, size)


def decode_images(data: tf.Tensor, size: int) -> tf.Tensor:
    """[batch] encoded images -> [batch, size, size, 3] float32 (see `decode_image`)."""
    return tf.map_fn(lambda one: decode_image(one, size), data,
                     fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))
