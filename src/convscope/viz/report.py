"""``RUN/report.html``: one self-contained page (figures embedded as base64 PNG) about a run.

It reads what a run folder holds, ``metrics.csv``, ``monitor.jsonl``, ``doctor.json``,
``model.safetensors`` with its ``config.yaml`` and ``run.json``, and shows what it can: the
curves, the per-layer monitoring, histograms, filters, feature maps, a confusion matrix or keypoints
on faces, the doctor's table, the diagnosis from the loss curves and the activation functions.
A missing input leaves a note in place of its figure, never an error.
"""

from __future__ import annotations

import base64
import html
import io
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from convscope.debug.diagnosis import diagnose, read_metrics
from convscope.debug.doctor import DOCTOR_FILE, DoctorReport
from convscope.debug.monitor import read_monitor
from convscope.errors import ConfigError
from convscope.viz import figures

REPORT_FILE = "report.html"
FIGURES = ("curves", "layer-trends", "act-histograms", "grad-histograms", "filters",
           "feature-maps", "predictions", "activations")
"""The id of every figure section; the predictions are a confusion matrix or keypoints."""


@dataclass
class Section:
    """One part of the page: an id, a title, and an embedded PNG or a note or raw HTML."""

    id: str
    title: str
    png: str | None = None
    note: str | None = None
    html: str | None = None

    def render(self) -> str:
        body = self.html or ""
        if self.png is not None:
            body += (f'<img alt="{html.escape(self.title)}" '
                     f'src="data:image/png;base64,{self.png}">')
        if self.note is not None:
            body += f'<p class="note">{html.escape(self.note)}</p>'
        return f'<section id="{self.id}"><h2>{html.escape(self.title)}</h2>{body}</section>'


def png(fig) -> str:
    """A figure as base64 PNG text (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)  # each figure lays itself out (tight_layout)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def figure_section(id_, title, make, missing: str | None) -> Section:
    """The section of figure ``make()``, or of the note ``missing`` when its input is absent."""
    if missing is not None:
        return Section(id_, title, note=missing)
    return Section(id_, title, png=png(make()))


def table_html(head, rows) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"


def doctor_section(report: DoctorReport | None) -> Section:
    if report is None:
        return Section("doctor", "doctor", note="no doctor.json: run `convscope doctor` on the "
                                                "config, or `convscope report RUN --doctor`")
    rows = report.rows()
    advice = [f"check {i}: {c.advice}" for i, c in enumerate(report.checks, 1) if not c.passed]
    lr = f"{report.recommended_lr:.2g}" if report.recommended_lr else "none"
    note = f"{report.job}, {report.seconds:.1f} s; recommended learning rate {lr}. "
    plot = None
    if report.lr_range and report.lr_range.get("lr"):
        plot = png(figures.lr_range(report.lr_range, report.recommended_lr, report.configured_lr))
    return Section("doctor", "doctor: sanity and loss checks",
                   html=table_html(["", "check", "result", "measured", "expected"], rows),
                   png=plot, note=note + " ".join(advice))

    return None


def diagnosis_section(history, records) -> Section:
    findings = diagnose(history, records)
    items = "".join(f"<li>{html.escape(str(f))}</li>" for f in findings)
    return Section("diagnosis", "diagnosis from the loss curves", html=f"<ul>{items}</ul>")


@dataclass
class Model:
    """A trained run's network, config, transforms and a sample of its test split."""

    net: object
    config: dict
    transforms: object
    x: np.ndarray
    y: np.ndarray


def load_model(run_dir, samples) -> Model | None:
    """The run's trained network and up to ``samples`` images of its test split (None when the
    folder holds no trained model)."""
    from convscope.train.datasets import load_split
    from convscope.train.run import MODEL, load_run

    if not (Path(run_dir) / MODEL).exists():
        return None
    net, config, transforms = load_run(run_dir)
    data = config["data"]
    split = load_split(data["name"], data["test_split"] or "train", data_dir=data["data_dir"],
                       **(data["options"] or {}))
    return Model(net, config, transforms, split.x[:samples], split.y[:samples])


def first_filters(net):
    """The filter bank of the first convolution, H'×W'×D×K (2D) or T'×H'×W'×D×K (3D), or None."""
    for layer in net.layers.values():
        w = layer.value("w")
        if type(layer).__name__ == "Conv" and w is not None and w.ndim in (4, 5):
            return w
    return None


def prediction_figure(model: Model):
    """A confusion matrix for a classifier, predicted keypoints on faces for a regressor."""
    scores = model.net.predict(model.transforms.input(model.x))
    if model.transforms.target is None:
        predicted = scores.reshape(len(scores), -1).argmax(axis=1)
        return figures.confusion(predicted, model.y, model.transforms.names)
    c = model.transforms.scale
    predicted = scores.reshape(model.y.shape) * c + c
    return figures.keypoints(model.x, predicted, model.y)


def sections(run_dir, doctor, samples, *, progress=False) -> list[Section]:
    """The page's sections in order, drawn one by one (a tqdm bar with ``progress``: matplotlib
    takes a second or two for each figure of many axes)."""
    history, records = read_metrics(run_dir), read_monitor(run_dir)
    model = load_model(run_dir, samples)
    no_model = None if model is not None else "no trained model (model.safetensors) in the run"
    no_records = None if any("t" in r for r in records) else (
        "no monitor.jsonl: train with the monitor on (convscope.debug.Monitor)")
    w = first_filters(model.net) if model else None
    parts = [
        partial(figure_section, "curves", "objective and error", lambda: figures.curves(history),
                None if history else "no metrics.csv in the run"),
        partial(figure_section, "layer-trends", "gradients and activations per layer over the epochs",
                lambda: figures.layer_trends(records), no_records),
        partial(figure_section, "act-histograms", "activation histograms",
                lambda: figures.histograms(records, "act"), no_records),
        partial(figure_section, "grad-histograms", "gradient histograms",
                lambda: figures.histograms(records, "grad"), no_records),
        partial(figure_section, "filters", "first layer's filters", lambda: figures.filters(w),
                no_model or (None if w is not None else "the network has no convolution")),
        partial(figure_section, "feature-maps", "feature maps of one input through every layer",
                lambda: figures.feature_maps(model.net, model.transforms.input(model.x[:1])),
                no_model),
        partial(figure_section, "predictions", "predictions on the test split",
                lambda: prediction_figure(model), no_model),
        partial(doctor_section, doctor),
        partial(diagnosis_section, history, records),
        partial(figure_section, "activations", "activation functions and their derivatives",
                figures.activations, None),
    ]
    bar = tqdm(parts, desc="report", unit="section", leave=False, disable=not progress,
               file=sys.stdout)
    return [part() for part in bar]


STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
         "img{max-width:100%}table{border-collapse:collapse}"
         "td,th{border:1px solid #ccc;padding:3px 6px;font-size:90%}.note{color:#555}")


def render(title, parts) -> str:
    body = "".join(s.render() for s in parts)
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            f"</title><style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}"
            f"</body></html>\n")


def write_report(run_dir, *, doctor=None, samples=2000, progress=None) -> Path:
    """Write ``run_dir/report.html`` and return its path. ``doctor``: a
    :class:`~convscope.debug.DoctorReport` (default: the run's ``doctor.json`` if there is one);
    ``samples``: how many test images the predictions figure uses; ``progress``: a bar over the
    sections (default: only when stdout is a terminal)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"report: {run_dir} is not a run folder")
    if doctor is None and (run_dir / DOCTOR_FILE).exists():
        doctor = DoctorReport.load(run_dir / DOCTOR_FILE)
    progress = sys.stdout.isatty() if progress is None else progress
    path = run_dir / REPORT_FILE
    parts = sections(run_dir, doctor, samples, progress=progress)
    path.write_text(render(f"convscope report: {run_dir.name}", parts), encoding="utf-8")
    return path
