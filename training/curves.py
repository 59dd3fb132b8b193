"""A figure of several runs against training time, from their `history.csv` (the driver
writes one row per epoch into each run directory).

    python -m training.curves charlm-rnn charlm-lstm charlm-gru charlm-wavenet \\
        --metric val_bpc --output docs/charlm-curves.png
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path


def read_history(path: Path, metric: str) -> tuple[list[float], list[float]]:
    """(minutes of training, `metric`) at the end of each epoch of one run."""
    with path.open() as file:
        rows = list(csv.DictReader(file))
    if not rows or metric not in rows[0]:
        raise SystemExit(f"{path} has no {metric!r} column (it has "
                         f"{sorted(rows[0]) if rows else 'no rows'})")
    return ([float(r["train_seconds"]) / 60 for r in rows], [float(r[metric]) for r in rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.curves", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="model names (their run directories)")
    parser.add_argument("--run-dir", type=Path, default=Path("runs"),
                        help="the runs' --run-dir (default: %(default)s)")
    parser.add_argument("--metric", default="val_bpc",
                        help="history.csv column to plot (default: %(default)s)")
    parser.add_argument("--title", default="",
                        help="the plot's title (default: the metric's name)")
    parser.add_argument("--output", default="curves.png",
                        help="PNG to write (default: %(default)s)")
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(7, 4.2))
    for name in args.models:
        minutes, values = read_history(args.run_dir / name / "history.csv", args.metric)
        ax.plot(minutes, values, marker="o", label=f"{name} ({min(values):.3f})")
    ax.set_xlabel("training time (minutes, this machine)")
    ax.set_ylabel(args.metric)
    ax.set_title(args.title or f"{args.metric} against training time")
    ax.grid(True, alpha=0.3)
    ax.legend()
    figure.tight_layout()
    figure.savefig(args.output, dpi=120)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
