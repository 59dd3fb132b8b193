"""`python -m training.run TASK`: train a model, evaluate it, export it for serving.

It ends by printing where the export went and its evaluation figures.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from training.config import PROFILES, TranslateConfig
from training.flags import add_config_arguments, config_from_args

# Tasks whose training has not landed yet: their corpora load already
# (training.corpora), their models come with the issue named here.
PENDING = {
    "tag": "the bidirectional POS tagger (Brown corpus: training.corpora.load_brown)",
    "charlm": "the character-level language model (PTB: training.corpora.load_ptb_chars)",
    "caption": "the image captioner (Twitter emoji: training.corpora.load_emoji)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.run", description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--log-level", default="INFO", help="Python logging level")
    tasks = parser.add_subparsers(dest="task", required=True, metavar="TASK")
    translate = tasks.add_parser(
        "translate", help="encoder-decoder LSTM translation (default: Bible en->fr)",
        description=TranslateConfig.__doc__)
    add_config_arguments(translate, TranslateConfig, PROFILES[TranslateConfig])
    for task, what in PENDING.items():
        tasks.add_parser(task, help=f"{what}: not trainable yet")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s", stream=sys.stderr)
    if args.task in PENDING:
        print(f"error: training for {PENDING[args.task]} has not landed yet; "
              "only `translate` trains today.", file=sys.stderr)
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from training.translate import train_translation  # TensorFlow loads only when needed

    config = config_from_args(TranslateConfig, args, PROFILES[TranslateConfig])
    logging.getLogger(__name__).info("config (profile %s): %s", args.profile, config)
    report = train_translation(config)
    print(f"\nexport: {report.export_path} ({report.export_bytes / 1e6:.1f} MB)")
    print(f"training time: {report.train_seconds:.0f} s")
    for key, value in report.metrics.items():
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
