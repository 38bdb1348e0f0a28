"""The report's matplotlib figures, one function each, every one returning a Figure (Agg backend,
no display needed).

- :func:`curves`: objective and error for training and validation over the epochs;
- :func:`layer_trends`: per-layer gradient and activation statistics over the epochs (the
  lecture's "monitoring the gradient of tiny VGG");
- :func:`histograms`: activation (or gradient) histograms per layer at the last monitored step;
- :func:`filters`: the first layer's filters f_{h,w,d,k} as an image grid;
- :func:`feature_maps`: the channels of every layer's output y_{i,j,k} for one input;
- :func:`confusion`: the confusion matrix of a classifier; :func:`keypoints`: predicted and true
  keypoints drawn on faces;
- :func:`activations`: the activation functions of :mod:`convscope.ops` and their derivatives
  g'(x), obtained from each op's backward with dE/dy = 1.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from convscope import ops  # noqa: E402


def _grid(n, cols, size=2.0, **kw):
    rows = max(1, math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows), squeeze=False, **kw)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat)


def _series(history, key):
    return [row[key] for row in history if isinstance(row.get(key), float)]


def curves(history) -> plt.Figure:
    """Objective E and error (top-1 or RMSE) per epoch, training and validation."""
    fig, (obj, err) = plt.subplots(1, 2, figsize=(10, 3.6))
    epochs = [row["epoch"] for row in history]
    error = "top1err" if any("train_top1err" in row for row in history) else "rmse"
    for ax, key, title in ((obj, "objective", "objective E"),
                           (err, error, "top-1 error" if error == "top1err" else "RMSE (px)")):
        for split, style in (("train", "-o"), ("val", "--s")):
            values = _series(history, f"{split}_{key}")
            if values:
                ax.plot(epochs[:len(values)], values, style, label=split, markersize=3)
        ax.set(title=title, xlabel="epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def lr_range(record, recommended=None, configured=None) -> plt.Figure:
    """The doctor's learning-rate range test: the loss of each mini-batch against its η (log
    scale), its smoothed curve, the η* recommended (a tenth of the η at the lowest smoothed loss)
    and the configured η."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.plot(record["lr"], record["loss"], ".", color="0.7", markersize=4, label="mini-batch loss")
    ax.plot(record["lr"], record["smooth"], "-", label="smoothed")
    for value, style, name in ((recommended, "--", "recommended η*"),
                               (configured, ":", "configured η")):
        if value:
            ax.axvline(value, linestyle=style, color="k", label=f"{name} = {value:.2g}")
    finite = [v for v in record["smooth"] if np.isfinite(v)]
    if finite:  # a diverging tail would squash the valley
        ax.set_ylim(0, 1.5 * max(finite[0], min(finite)) + 1e-12)
    ax.set(xscale="log", xlabel="learning rate η", ylabel="loss",
           title="learning-rate range test")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _by_layer(records, key):
    """{layer: (t values, key values)} over the monitor's records, in layer order."""
    out: dict[str, tuple[list, list]] = {}
    for r in records:
        if r.get(key) is not None and "t" in r:
            ts, vs = out.setdefault(r["layer"], ([], []))
            ts.append(r["t"])
            vs.append(r[key])
    return out


TRENDS = (("w_grad_rms", "RMS dE/dω per layer", True),
          ("grad_rms", "RMS dE/dy at each layer's output", True),
          ("act_std", "std of each layer's activations", False),
          ("update_ratio", "update ratio ‖Δω‖/‖ω‖ (≈1e-3 is healthy)", True))


def layer_trends(records) -> plt.Figure:
    """Per-layer statistics over time (epochs): weight gradients, output gradients, activation
    spread and update ratios, one line per layer, each layer in one colour on every panel (the
    weight panels hold only the layers with weights) and named in the legend."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    layers = list(dict.fromkeys(r["layer"] for r in records if "t" in r and "layer" in r))
    colours = {layer: plt.get_cmap("tab20")(i % 20) for i, layer in enumerate(layers)}
    for ax, (key, title, log) in zip(axes.flat, TRENDS):
        for layer, (ts, vs) in _by_layer(records, key).items():
            ax.plot(ts, vs, color=colours[layer], linewidth=1.2)
        if log:
            ax.set_yscale("log")
        if key == "update_ratio":
            ax.axhline(1e-3, color="gray", linestyle=":")
        ax.set(title=title, xlabel="epoch")
        ax.grid(alpha=0.3)
    fig.legend(handles=[Line2D([], [], color=colours[layer], label=layer) for layer in layers],
               loc="center right", fontsize=8)
    fig.tight_layout(rect=(0, 0, 0.87, 1))
    return fig


def last_step(records) -> list[dict]:
    """The per-layer records of the last monitored step."""
    steps = [r["step"] for r in records if "t" in r]
    return [r for r in records if "t" in r and r["step"] == max(steps)] if steps else []


def histograms(records, kind="act") -> plt.Figure:
    """Histograms of activations (``kind='act'``) or of dE/dy (``'grad'``) per layer at the last
    monitored step."""
    rows = [r for r in last_step(records) if f"{kind}_hist" in r]
    fig, axes = _grid(len(rows), 4, size=2.6)
    for ax, r in zip(axes, rows):
        hist = r[f"{kind}_hist"]
        edges = np.asarray(hist["edges"])
        ax.bar(edges[:-1], hist["counts"], width=np.diff(edges), align="edge", color="tab:blue")
        ax.set_title(f"{r['layer']} ({r['type']})", fontsize=9)
        ax.tick_params(labelsize=7)
    what = "activations" if kind == "act" else "gradients dE/dy"
    fig.suptitle(f"{what} at step {rows[0]['step'] if rows else '-'}")
    fig.tight_layout()
    return fig


def _tile(a) -> np.ndarray:
    """An array scaled to [0, 1] for display."""
    a = np.asarray(a, dtype=np.float64)
    low, high = np.nanmin(a), np.nanmax(a)
    return (a - low) / (high - low) if high > low else np.zeros_like(a)


def middle_slice(a):
    """An H×W plane of a map: a T×H×W volume (3D ConvNets) is shown by its middle slice t = T/2."""
    while a.ndim > 2:
        a = a[a.shape[0] // 2]
    return a


def filters(w, title="first layer's filters") -> plt.Figure:
    """Filters w[h, w, d, k] (2D convolution) as K tiles: RGB when D = 3, else the mean over d; the
    filters w[t, h, w, d, k] of a 3D convolution by their middle slice t = T'/2."""
    w = np.asarray(w)
    k = w.shape[-1]
    fig, axes = _grid(k, min(k, 8), size=1.2)
    for i, ax in enumerate(axes[:k]):
        f = w[..., i]
        f = f[f.shape[0] // 2] if f.ndim == 4 else f  # T'×H'×W'×D: its middle slice t = T'/2
        image = _tile(f) if f.shape[-1] == 3 else _tile(f.mean(axis=-1))
        ax.imshow(image, cmap=None if image.ndim == 3 else "gray", interpolation="nearest")
        ax.set_title(str(i), fontsize=7)
        ax.axis("off")
    axes_names = "T'×H'×W'×D×K" if w.ndim == 5 else "H'×W'×D×K"
    fig.suptitle(f"{title}: {'×'.join(map(str, w.shape))} ({axes_names})")
    fig.tight_layout()
    return fig


def feature_maps(net, x, *, channels=8) -> plt.Figure:
    """The first ``channels`` channels of every layer's H×W×D output for one input x (1×H×W×D),
    in execution order: convolved, activated, pooled, normalised."""
    values = net.forward({net.roles["input"]: x[:1]})
    maps = [(net.roles["input"], values[net.roles["input"]])]
    maps += [(name, values[node.output]) for name, node in
             ((n, net.nodes[n]) for n in net.order())
             if node.output in values and values[node.output].ndim in (4, 5)
             and min(values[node.output].shape[1:-1]) > 1]
    fig, axes = plt.subplots(len(maps), channels, figsize=(1.3 * channels, 1.4 * len(maps)),
                             squeeze=False)
    for row, (name, y) in zip(axes, maps):
        for c, ax in enumerate(row):
            ax.axis("off")
            if c < y.shape[-1]:
                ax.imshow(_tile(middle_slice(y[0, ..., c])), cmap="viridis", interpolation="nearest")
        row[0].set_title(f"{name} {'×'.join(map(str, y.shape[1:]))}", fontsize=8, loc="left")
    fig.tight_layout()
    return fig


def confusion(predicted, labels, names) -> plt.Figure:
    """The C×C confusion matrix: row = true class, column = predicted class."""
    c = len(names)
    m = np.zeros((c, c), dtype=int)
    np.add.at(m, (np.asarray(labels), np.asarray(predicted)), 1)
    fig, ax = plt.subplots(figsize=(0.5 * c + 2.5, 0.5 * c + 2))
    ax.imshow(m, cmap="Blues")
    for (i, j), v in np.ndenumerate(m):
        if v:
            ax.text(j, i, str(v), ha="center", va="center", fontsize=7,
                    color="white" if v > m.max() / 2 else "black")
    ax.set(xticks=range(c), yticks=range(c), xlabel="predicted", ylabel="true",
           title=f"confusion matrix, error {100 * (1 - np.trace(m) / max(m.sum(), 1)):.2f}%")
    ax.set_xticklabels([str(n) for n in names], rotation=90, fontsize=7)
    ax.set_yticklabels([str(n) for n in names], fontsize=7)
    fig.tight_layout()
    return fig


def keypoints(images, predicted, true, *, count=8) -> plt.Figure:
    """Predicted (red ×) and true (green ○) keypoints (x, y) in pixels on the first faces."""
    n = min(count, len(images))
    fig, axes = _grid(n, 4, size=2.4)
    for i, ax in enumerate(axes[:n]):
        ax.imshow(np.asarray(images[i])[..., 0], cmap="gray")
        ax.scatter(true[i][:, 0], true[i][:, 1], s=12, facecolors="none", edgecolors="lime")
        ax.scatter(predicted[i][:, 0], predicted[i][:, 1], s=12, c="red", marker="x")
        ax.axis("off")
    fig.suptitle("keypoints: predicted × against true ○")
    fig.tight_layout()
    return fig


ACTIVATIONS = ("relu", "leaky_relu", "elu", "sigmoid", "tanh", "softplus")


def activations(names=ACTIVATIONS) -> plt.Figure:
    """Each activation g(x) of :mod:`convscope.ops` and its derivative g'(x) = dE/dx for
    dE/dy = 1, computed by the op's own backward."""
    x = np.linspace(-4, 4, 401)
    fig, axes = _grid(len(names), 3, size=3.0)
    for ax, name in zip(axes, names):
        forward, backward = getattr(ops, name), getattr(ops, f"{name}_backward")
        ax.plot(x, forward(x), label="g(x)")
        ax.plot(x, backward(x, np.ones_like(x)), "--", label="g'(x)")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
