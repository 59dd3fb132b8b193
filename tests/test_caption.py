"""The captioner as users meet it: trained by the shared driver on captioned images (a
user's TSV file of toy pictures here), exported with `caption` and the step functions,
evaluated through the export, and served by Caption over real gRPC."""

from __future__ import annotations

import io
import random
from pathlib import Path

import grpc
import pytest
import tensorflow as tf
from PIL import Image, ImageDraw

from model.contract import CAPTION
from protos.recur.v1 import recur_pb2
from serving import client as client_cli
from serving.client import RecurClient
from serving.process import ServerProcess
from training.caption_evaluation import caption_figures, word_errors
from training.corpora import CaptionedImage

pytestmark = pytest.mark.slow

MODEL = "toy-caption"
COLOURS = {"red": (220, 30, 30), "green": (30, 160, 50), "blue": (40, 60, 220)}
SHAPES = ("square", "circle", "cross")


def picture(colour: str, shape: str, rng: random.Random, format: str = "PNG") -> bytes:
    """A shape in a colour on a transparent background, at a random place and size."""
    image = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    size = rng.randint(14, 22)
    x, y = rng.randint(1, 31 - size), rng.randint(1, 31 - size)
    fill = (*COLOURS[colour], 255)
    if shape == "square":
        draw.rectangle([x, y, x + size, y + size], fill=fill)
    elif shape == "circle":
        draw.ellipse([x, y, x + size, y + size], fill=fill)
    else:
        third = size // 3
        draw.rectangle([x + third, y, x + 2 * third, y + size], fill=fill)
        draw.rectangle([x, y + third, x + size, y + 2 * third], fill=fill)
    out = io.BytesIO()
    if format != "PNG":  # no transparency kept: drawn on white, as decoding paints PNGs
        image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image)
    (image if format == "PNG" else image.convert("RGB")).save(out, format=format)
    return out.getvalue()


def toy_captions(directory: Path, count: int, seed: int) -> Path:
    """`count` pictures and a TSV file giving each two captions ("a red circle", "red
    circle")."""
    rng = random.Random(seed)
    lines = []
    for i in range(count):
        colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
        (directory / f"{i}.png").write_bytes(picture(colour, shape, rng))
        lines += [f"{i}.png\ta {colour} {shape}\n", f"{i}.png\t{colour} {shape}\n"]
    path = directory / "captions.tsv"
    path.write_text("".join(lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def caption_export(tmp_path_factory):
    """A tiny captioner trained on 400 toy pictures (about 20 s; it names every test
    picture right from 10 epochs on); (report, base, config)."""
    from training.caption import TASK, CaptionConfig
    from training.driver import train

    images = tmp_path_factory.mktemp("caption-images")
    base = tmp_path_factory.mktemp("caption-exports")
    config = CaptionConfig(
        train_file=str(toy_captions(images, 400, seed=0)), model_name=MODEL, image_size=32,
        channels="8,16,32", embedding_dim=16, units=64, dropout=0.0, vocab_size=40,
        max_caption_tokens=16, batch_size=32, epochs=15, learning_rate=3e-3, patience=0,
        export_base=str(base), run_dir=str(tmp_path_factory.mktemp("caption-runs")))
    return train(TASK, config), base, config


def test_training_learns_to_name_colour_and_shape_and_draws_the_grid(caption_export):
    report, _, config = caption_export
    assert report.metrics["test_exact_greedy"] >= 90, report.metrics
    assert report.metrics["test_exact_beam4"] >= 90, report.metrics
    assert report.metrics["test_word_accuracy_beam4"] >= 95, report.metrics
    grid = Image.open(Path(config.run_dir) / MODEL / "caption-grid-test.png")
    assert grid.format == "PNG" and grid.width > 1000


def test_the_export_captions_png_jpeg_and_gif_bytes_with_n_best(caption_export):
    report, _, _ = caption_export
    caption = tf.saved_model.load(str(report.export_path)).signatures[CAPTION.signature.name]
    rng = random.Random(1)
    images = [picture("blue", "circle", rng), picture("red", "cross", rng, "JPEG"),
              picture("green", "square", rng, "GIF")]
    out = CAPTION.signature.call(caption, [
        {"images": image, "beam_width": 4, "num_hypotheses": 3, "length_penalty": 0.6,
         "max_length": 15} for image in images])
    assert out["texts"].shape == (3, 3)
    best = [text.decode().removeprefix("a ") for text in out["texts"][:, 0]]
    assert best == ["blue circle", "red cross", "green square"], best
    assert (out["scores"][:, 0] >= out["scores"][:, 1]).all()
    assert (out["num_tokens"] <= 15).all()


def test_caption_figures_use_every_reference_and_each_held_out_kind():
    images = [CaptionedImage(Path("a"), ("red heart", "heart"), "emoji"),
              CaptionedImage(Path("b"), ("santa: dark skin tone",), "skin tone")]
    figures = caption_figures(images, ["heart", "santa: light skin tone"])
    assert figures["exact"] == 50.0  # the first matches its second reference
    assert figures["emoji_exact"] == 100.0 and figures["skin_tone_exact"] == 0.0
    # Closest references: "heart" (0 errors of 1 word), the santa one (1 of 4).
    assert figures["word_accuracy"] == 80.0
    assert word_errors("a b c", "a c") == 1 and word_errors("", "a b") == 2


def serve(caption_export, *args: str):
    _, base, _ = caption_export
    process = ServerProcess(base, "--poll-seconds", "0", "--max-image-bytes", "8000",
                            "--max-image-pixels", str(64 * 64), *args)
    process.wait_until_serving()
    yield process
    assert process.stop() == 0, process.log_path.read_text()


@pytest.fixture(scope="module")
def caption_server(caption_export):
    yield from serve(caption_export)


@pytest.fixture(scope="module")
def request_scheduled_caption_server(caption_export):
    yield from serve(caption_export, "--scheduling", "request")


def test_caption_over_grpc_and_the_cli_prints_the_n_best(caption_server, tmp_path, capsys):
    rng = random.Random(2)
    with RecurClient(caption_server.target) as client:
        answers = client.caption([picture("red", "square", rng),
                                  picture("blue", "cross", rng, "JPEG")],
                                 beam_width=3, num_hypotheses=2)
    assert [a.result.hypotheses[0].text.removeprefix("a ") for a in answers] == [
        "red square", "blue cross"]
    assert all(len(a.result.hypotheses) == 2 and a.model_version == 1 for a in answers)
    # Images join a running decode, as translations do.
    assert "(caption, step scheduling)" in caption_server.log_path.read_text()
    (tmp_path / "green.gif").write_bytes(picture("green", "circle", rng, "GIF"))
    assert client_cli.main(["--target", caption_server.target, "caption",
                            str(tmp_path / "green.gif"), "--beam-width", "2"]) == 0
    out = capsys.readouterr().out
    assert "green.gif" in out and "green circle" in out and "2. score" in out
    # a bad file among good ones: the good ones' n-best, the bad one's error, exit 1
    cut = picture("red", "circle", rng)
    (tmp_path / "cut.png").write_bytes(cut[:len(cut) // 2])
    assert client_cli.main(["--target", caption_server.target, "caption",
                            str(tmp_path / "cut.png"), str(tmp_path / "green.gif")]) == 1
    out = capsys.readouterr().out
    assert out.index("cut.png") < out.index("error: INVALID_ARGUMENT: image is a truncated "
                                            "or corrupt PNG") < out.index("green circle")


def bad_images() -> dict[str, tuple[bytes, str]]:
    """Name -> (image bytes, what the INVALID_ARGUMENT message must say)."""
    good = picture("red", "circle", random.Random(3))
    zero = bytearray(good)
    zero[16:20] = b"\0\0\0\0"  # IHDR width 0
    noise = Image.frombytes("RGB", (60, 60), random.Random(4).randbytes(60 * 60 * 3))
    big = io.BytesIO()
    noise.save(big, format="PNG")
    large = io.BytesIO()
    Image.new("RGB", (100, 100), "white").save(large, format="PNG")
    frames = [Image.new("RGB", (40, 40), colour) for colour in ("red", "green", "blue")]
    animated = io.BytesIO()
    frames[0].save(animated, format="GIF", save_all=True, append_images=frames[1:])
    bomb = bytearray(animated.getvalue())
    bomb[6:10] = b"\x01\x00\x01\x00"  # a 1x1 logical screen, frames of 40x40
    return {
        "text": (b"hello, this is not an image", "not a PNG, JPEG or GIF"),
        "empty": (b"", "image is empty"),
        "truncated": (good[:len(good) // 2], "truncated or corrupt PNG"),
        "corrupt": (good[:40] + bytes(len(good) - 40), "truncated or corrupt PNG"),
        "zero size": (bytes(zero), "0x32 pixels"),
        "over the byte limit": (big.getvalue(), "limit is 8,000 (--max-image-bytes)"),
        "over the pixel limit": (large.getvalue(), "100x100 = 10,000 pixels; the limit is "
                                                   "4,096 (--max-image-pixels)"),
        "frames over the pixel limit": (bytes(bomb), "a GIF of frames up to 40x40, 4,800 "
                                                     "pixels in all; the limit is 4,096"),
        "cut in its header": (good[:20], "truncated or corrupt PNG: its header gives no "
                                         "image size"),
    }


@pytest.mark.parametrize("server", ["caption_server", "request_scheduled_caption_server"])
def test_bad_images_get_invalid_argument_and_good_ones_beside_them_are_answered(
        server, request):
    """Sent at once, so that they share model calls: a truncated or corrupt image passes
    the header checks and fails the call it is in, whose requests are then run apart."""
    caption_server = request.getfixturevalue(server)
    rng = random.Random(5)
    good = [(picture(c, s, rng), f"{c} {s}") for c, s in (("red", "cross"), ("green", "square"),
                                                         ("blue", "circle"))]
    bad = bad_images()
    spec = recur_pb2.ModelSpec(name=MODEL)
    with RecurClient(caption_server.target) as client:
        calls = [client.stub.Caption.future(recur_pb2.CaptionRequest(model=spec, image=image),
                                            timeout=30)
                 for image in [*(g for g, _ in good), *(b for b, _ in bad.values()),
                               *(g for g, _ in good)]]
        answered = [call.result().result.hypotheses[0].text.removeprefix("a ")
                    for call in calls[:3] + calls[-3:]]
        assert answered == [caption for _, caption in good] * 2
        for (name, (_, message)), call in zip(bad.items(), calls[3:-3], strict=True):
            with pytest.raises(grpc.RpcError) as refused:
                call.result()
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, name
            assert message in refused.value.details(), (name, refused.value.details())
        ratio = recur_pb2.CaptionRequest(model=spec, image=good[0][0],
                                         options=recur_pb2.DecodeOptions(max_length_ratio=2))
        with pytest.raises(grpc.RpcError, match="max_length_ratio is for translation only"):
            client.stub.Caption(ratio, timeout=30)


def test_the_benchmarks_step_scheduler_answers_every_image(caption_export):
    """`benchmarks.caption`'s in-process step scheduler on the real export: 32 images, 8 in
    flight, each answered image replaced by a new one at once: all 32 are answered, in
    several batches of news."""
    from benchmarks.caption import stepped

    report, _, _ = caption_export
    rng = random.Random(5)
    images = [picture(rng.choice(list(COLOURS)), rng.choice(SHAPES), rng) for _ in range(8)]
    row = stepped(tf.saved_model.load(str(report.export_path)), images, in_flight=8,
                  total=32, beam_width=2, max_length=16)
    assert row["images"] == 32 and row["news"] >= 4
