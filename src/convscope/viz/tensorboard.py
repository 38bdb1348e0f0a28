"""Optional TensorBoard export of a run's scalars and histograms, for users who live in
TensorBoard: ``convscope report RUN --tensorboard [LOGDIR]``.

It writes event files with ``torch.utils.tensorboard`` (needs the ``tensorboard`` package) or
``tensorboardX``, whichever imports; with neither it raises a ConfigError that says what to
install. Scalars: every metric of ``metrics.csv`` per epoch (``epoch/<metric>``) and every
per-layer statistic of ``monitor.jsonl`` per step (``<layer>/<statistic>``); histograms: the
monitor's activation and gradient histograms (``<layer>/activations``, ``<layer>/gradients``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from convscope.debug.diagnosis import read_metrics
from convscope.debug.monitor import read_monitor
from convscope.errors import ConfigError

INSTALL = ("TensorBoard export needs the tensorboard package (pip install tensorboard) or "
           "tensorboardX (pip install tensorboardX); neither is installed")
SCALARS = ("act_mean", "act_std", "act_zero", "act_dead", "act_saturated", "grad_rms",
           "w_norm", "w_grad_norm", "update_ratio")


def summary_writer(logdir):
    """A SummaryWriter from torch.utils.tensorboard or tensorboardX, or a ConfigError."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise ConfigError(INSTALL) from None
    return SummaryWriter(str(logdir))


def histogram_args(hist) -> dict:
    """The arguments of ``add_histogram_raw`` for a monitor histogram (bin centres stand for
    their values in the sums)."""
    edges, counts = np.asarray(hist["edges"]), np.asarray(hist["counts"], dtype=np.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    return {"min": float(edges[0]), "max": float(edges[-1]), "num": int(counts.sum()),
            "sum": float(centres @ counts), "sum_squares": float((centres ** 2) @ counts),
            "bucket_limits": edges[1:].tolist(), "bucket_counts": counts.tolist()}


def export_tensorboard(run_dir, logdir=None) -> Path:
    """Write the run's scalars and histograms as TensorBoard events to ``logdir`` (default
    ``RUN/tensorboard``); returns it."""
    run_dir = Path(run_dir)
    logdir = Path(logdir) if logdir else run_dir / "tensorboard"
    writer = summary_writer(logdir)
    for row in read_metrics(run_dir):
        for key, value in row.items():
            if key != "epoch" and isinstance(value, float):
                writer.add_scalar(f"epoch/{key}", value, int(row["epoch"]))
    for r in read_monitor(run_dir):
        if "t" not in r:
            continue
        for key in SCALARS:
            if r.get(key) is not None:
                writer.add_scalar(f"{r['layer']}/{key}", r[key], r["step"])
        for key, name in (("act_hist", "activations"), ("grad_hist", "gradients")):
            if key in r and sum(r[key]["counts"]):
                writer.add_histogram_raw(f"{r['layer']}/{name}", global_step=r["step"],
                                         **histogram_args(r[key]))
    writer.close()
    return logdir
