"""`python -m training.run TASK`: train a model, evaluate it, export it for serving.

It ends by printing where the export went and its evaluation figures.
"""

from __future__ import annotations

import argparse
import logging
import sys

from model.startup import import_tensorflow, warm_up

# Before anything else imports it, quietly; the runtime starts once the strategy is known.
import_tensorflow(initialize=False)

from model.config import add_config_arguments, config_from_args  # noqa: E402
from training.distribute import distribution  # noqa: E402
from training.driver import train  # noqa: E402
from training.tasks import TASKS  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.run", description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--log-level", default="INFO", help="Python logging level")
    tasks = parser.add_subparsers(dest="task", required=True, metavar="TASK")
    for name, task in TASKS.items():
        sub = tasks.add_parser(name, help=task.description, description=task.config.__doc__)
        add_config_arguments(sub, task.config, task.profiles)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s", stream=sys.stderr)
    if logging.getLogger().level >= logging.INFO:
        # TensorFlow's INFO lines at export ("Assets written to", renamed inputs) repeat
        # what the run itself reports.
        for name in ("absl", "tensorflow"):
            logging.getLogger(name).setLevel(logging.WARNING)
    task = TASKS[args.task]
    try:
        config = config_from_args(task.config, args, task.profiles)
    except ValueError as error:
        parser.error(str(error))
    logging.getLogger(__name__).info("config (profile %s): %s", args.profile, config)
    try:
        distribution(config.strategy, config.workers, config.worker_index)
    except ValueError as error:
        parser.error(str(error))
    warm_up()
    report = train(task, config)
    if report.export_path is None:
        print(f"\ntraining time: {report.train_seconds:.0f} s; this worker is not the chief "
              "(worker 0), which exports and evaluates")
        return 0
    print(f"\nexport: {report.export_path} ({report.export_bytes / 1e6:.1f} MB)")
    print(f"training time: {report.train_seconds:.0f} s")
    for key, value in report.metrics.items():
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
