"""The seed's lesson, measured: how the gradient of the loss at step t with respect to the
hidden state k steps earlier decays with k, for recurrent character LMs at
initialisation and after training.

    python -m training.gradient_decay charlm-rnn charlm-lstm charlm-gru \\
        --output docs/gradient-decay.png

Each argument names a one-layer recurrent `python -m training.run charlm` model: its
run directory's `model.weights.h5` is the trained model, and its configuration (in its
newest export's `recur.json`) builds the same model freshly initialised. On --windows windows of
--length characters of the training text, the loss of the last character is
differentiated with respect to the hidden state (h; for the LSTM its output h, the
memory c flowing into it) at every earlier step; the plot shows the mean norm of that
gradient against k, one line per model and state.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from model.startup import import_tensorflow

import_tensorflow()  # before anything else imports it: quietly

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from model.char_lm import CharLM, CharLMConfig  # noqa: E402
from model.characters import Characters  # noqa: E402
from model.contract import METADATA_FILE  # noqa: E402
from model.export import versions  # noqa: E402
from model.tokenizer import BOS_ID  # noqa: E402
from training.charlm import CarriedState, CharLMTrainingConfig, load_texts  # noqa: E402
from training.driver import WEIGHTS_FILE  # noqa: E402

log = logging.getLogger(__name__)


def gradient_norms(lm: CharLM, windows: np.ndarray) -> np.ndarray:
    """windows [batch, length + 1] ids -> [length] mean norm of d loss(last step) / d h at
    each earlier step, k = 0 (the last step's own state) first."""
    rnn = lm.backbone.rnns[0]
    inputs = tf.constant(windows[:, :-1])
    state = lm.initial_state(len(windows))[:2 if isinstance(rnn, keras.layers.LSTM) else 1]
    hidden = []
    with tf.GradientTape() as tape:
        embedded = lm.embedding(inputs)
        for t in range(inputs.shape[1]):
            output, state = rnn.cell(embedded[:, t], state)
            state = list(state) if isinstance(state, list | tuple) else [state]
            hidden.append(output)
        loss = keras.losses.sparse_categorical_crossentropy(
            windows[:, -1], lm.next_logits(output), from_logits=True)
        loss = tf.reduce_mean(loss)
    gradients = tape.gradient(loss, hidden)
    norms = [tf.reduce_mean(tf.norm(g * len(windows), axis=-1)) for g in gradients]
    return np.array(norms[::-1])


def load_run(name: str, run_dir: Path, export_base: Path
             ) -> tuple[CharLMTrainingConfig, Characters, Path]:
    """A trained charlm model's configuration, alphabet and weights file."""
    exported = versions(export_base / name)
    weights = run_dir / name / WEIGHTS_FILE
    if not exported or not weights.exists():
        raise SystemExit(f"no trained model {name!r} (export in {export_base}, weights in "
                         f"{run_dir}): train it with python -m training.run charlm first")
    metadata = json.loads((export_base / name / str(exported[-1]) / METADATA_FILE).read_text())
    return (CharLMTrainingConfig(**metadata["config"]), Characters(metadata["alphabet"]),
            weights)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.gradient_decay",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+",
                        help="names of trained one-layer rnn, lstm or gru charlm models")
    parser.add_argument("--run-dir", type=Path, default=Path("runs"),
                        help="their training runs' --run-dir (default: %(default)s)")
    parser.add_argument("--export-base", type=Path, default=Path("exports"),
                        help="their --export-base (default: %(default)s)")
    parser.add_argument("--length", type=int, default=120,
                        help="steps back from the loss (default: %(default)s)")
    parser.add_argument("--windows", type=int, default=64,
                        help="text windows averaged over (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the text windows' random starts (default: %(default)s)")
    parser.add_argument("--output", default="gradient-decay.png",
                        help="PNG to write, and its figures as the same name .json "
                             "(default: %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves: dict[str, dict[str, list[float]]] = {}
    for name in args.models:
        config, characters, weights = load_run(name, args.run_dir, args.export_base)
        if config.backbone == "wavenet" or config.layers != 1:
            parser.error(f"{name}: only one-layer recurrent models have the hidden state "
                         "measured here")
        train, _ = load_texts(config)
        rng = np.random.default_rng(args.seed)
        starts = rng.integers(0, len(train) - args.length - 1, args.windows)
        ids = characters.encode_numpy(train)
        windows = np.stack([ids[s:s + args.length + 1] for s in starts])
        windows[:, 0] = BOS_ID  # as every segment of training begins
        label = f"{config.backbone} {config.units} units"
        keras.utils.set_random_seed(config.seed)
        lm = CharLM(characters.size, CharLMConfig(**{
            k: getattr(config, k) for k in CharLMConfig.__dataclass_fields__}))
        model = CarriedState(lm, config.batch_size)
        model.build(None)
        curves[label] = {"initialisation": gradient_norms(lm, windows).tolist()}
        model.load_weights(weights)
        curves[label]["trained"] = gradient_norms(lm, windows).tolist()
        shown = [k for k in (0, 10, 50, 100) if k < args.length]
        log.info("%s: |dL/dh| at k = %s: at initialisation %s, trained %s", label, shown,
                 *([f"{curves[label][stage][k]:.2e}" for k in shown]
                   for stage in ("initialisation", "trained")))

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, stage in zip(axes, ("initialisation", "trained"), strict=True):
        for label, curve in curves.items():
            ax.semilogy(np.arange(len(curve[stage])), curve[stage], label=label)
        ax.set_title(f"at {stage}" if stage == "initialisation" else "after training")
        ax.set_xlabel("k: steps between the hidden state and the loss")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("mean |d loss_t / d h_(t-k)|")
    axes[1].legend()
    figure.suptitle("Gradient reaching earlier hidden states, character LMs on the "
                    "training text")
    figure.tight_layout()
    figure.savefig(args.output, dpi=120)
    Path(args.output).with_suffix(".json").write_text(json.dumps(curves, indent=1) + "\n")
    print(f"wrote {args.output} and {Path(args.output).with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
