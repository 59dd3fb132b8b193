"""Checks an image's headers before it may join a batch; the export decodes it in the
graph.

The format and size come from the file's headers (a GIF's: every frame's), so an image
over the pixel limit (a decompression bomb among them) is refused before anything is
decoded. A truncated or corrupt file with sound headers fails the model call it is in:
the batcher then runs that call's requests apart (`serving.batcher.run_isolating`) and
`undecodable` words the error of the one that fails alone. Decoding every image once
more to check it, on a thread of its own, cost 12 % of the captions served at 16
clients (2026-12-05).
"""

from __future__ import annotations

import re
import struct

import tensorflow as tf

from serving.config import LimitsConfig
from serving.errors import RequestError, invalid, reason

SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF87a": "GIF",
              b"GIF89a": "GIF"}
# TensorFlow's error from the export's decoder (`model/images.py`), inside a graph call:
# "... {{node map/while/decode_image/DecodeImage}} ..."
_DECODER_NODE = re.compile(r"\{\{node [^}]*decode_image/")
# JPEG start-of-frame markers (SOF0..SOF15 but DHT C4, JPG C8, DAC CC): the frame's size.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def check_image(data: bytes, limits: LimitsConfig, field: str = "image") -> str:
    """Raises INVALID_ARGUMENT naming `field` unless `data`'s headers are those of a PNG,
    JPEG or GIF of at most `max_image_bytes` and `max_image_pixels`; returns its format."""
    if not data:
        raise invalid(f"{field} is empty: send the bytes of a PNG, JPEG or GIF file")
    if len(data) > limits.max_image_bytes:
        raise invalid(f"{field} is {len(data):,} bytes; the limit is "
                      f"{limits.max_image_bytes:,} (--max-image-bytes): send a smaller file")
    format = image_format(data)
    if format is None:
        raise invalid(f"{field} is not a PNG, JPEG or GIF file (it starts with "
                      f"{data[:8]!r}): send one of those")
    size = _header_size(data, format)
    if size is None:
        raise invalid(f"{field} is a truncated or corrupt {format}: its header gives no "
                      "image size")
    width, height, pixels = size
    if not width or not height:
        raise invalid(f"{field} is a {format} of {width}x{height} pixels: it has no pixels")
    if pixels > limits.max_image_pixels:
        shape = (f"{width}x{height} = {pixels:,} pixels" if pixels == width * height else
                 f"a GIF of frames up to {width}x{height}, {pixels:,} pixels in all")
        raise invalid(f"{field} is {shape}; the limit is {limits.max_image_pixels:,} "
                      "(--max-image-pixels): scale it down")
    return format


def image_format(data: bytes) -> str | None:
    """"PNG", "JPEG" or "GIF" from the file's signature; None for anything else."""
    return next((f for magic, f in SIGNATURES.items() if data.startswith(magic)), None)


def undecodable(data: bytes, error: Exception, field: str = "image") -> RequestError | None:
    """INVALID_ARGUMENT naming `field` if `error` is the export's image decoder refusing
    `data` (which passed `check_image`); None for any other error (the server's)."""
    if not (isinstance(error, tf.errors.InvalidArgumentError)
            and _DECODER_NODE.search(error.message)):
        return None
    return invalid(f"{field} is a truncated or corrupt {image_format(data)}: it does not "
                   f"decode ({reason(error)})")


def _header_size(data: bytes, format: str) -> tuple[int, int, int] | None:
    """(width, height, pixels decoded) from the headers, None if they are cut short."""
    if format == "PNG":  # IHDR is the first chunk: width, height at bytes 16..24
        if len(data) < 24 or data[12:16] != b"IHDR":
            return None
        width, height = struct.unpack(">II", data[16:24])
        return width, height, width * height
    if format == "GIF":
        return _gif_size(data)
    at = 2  # JPEG: walk the segments to the start of frame
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        length = struct.unpack(">H", data[at + 2:at + 4])[0]
        if marker in _SOF:
            if at + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[at + 5:at + 9])
            return width, height, width * height
        at += 2 + length
    return None


def _gif_size(data: bytes) -> tuple[int, int, int] | None:
    """A GIF's largest frame (TensorFlow's canvas: its widest width by its tallest
    height) and its frames' pixels together (the decoder unpacks them all), from the
    image descriptors; its logical screen size says nothing of either."""
    if len(data) < 13:
        return None
    at = 13 + _colour_table(data[10])
    frames = []
    while at < len(data) and data[at] != 0x3B:  # 0x3B: the trailer
        if data[at] == 0x21:  # an extension: its label, then data sub-blocks
            at += 2
        elif data[at] == 0x2C and at + 10 <= len(data):  # an image descriptor
            frames.append(struct.unpack("<HH", data[at + 5:at + 9]))
            at += 10 + _colour_table(data[at + 9]) + 1  # + the LZW minimum code size
        else:
            break
        while at < len(data) and data[at]:  # data sub-blocks, ended by an empty one
            at += data[at] + 1
        at += 1
    if not frames:
        return None
    return (max(w for w, _ in frames), max(h for _, h in frames),
            sum(w * h for w, h in frames))


def _colour_table(flags: int) -> int:
    """Bytes of the colour table a GIF's packed flags announce."""
    return 3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0
