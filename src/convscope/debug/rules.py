"""The monitor's warnings: rules over one step's per-layer statistics, each naming the layer.

- vanishing gradients: a layer's RMS dE/dω is below ``vanishing`` (1e-3) times the RMS dE/dω of
  the last layer with weights, i.e. the gradient fell by orders of magnitude on its way back to the
  input (Bengio, Simard & Frasconi 1994, the lecture's [2]);
- exploding gradients: above ``exploding`` (1e3) times it;
- dead ReLU layer: more than ``dead`` (half) of its channels are 0 at every position for every
  sample of the batch (their filters get no gradient);
- saturated sigmoid/tanh layer: more than ``saturated`` (half) of its outputs in the flat tails;
- update ratio ‖Δω‖/‖ω‖ far from ~1e-3: below ``update_low`` or above ``update_high``.

The remedies are the lecture's: batch normalisation and a proper weight initialisation for
vanishing and exploding gradients, and the learning rate for the update ratio.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Thresholds:
    """When a statistic becomes a warning (see the module's docstring)."""

    vanishing: float = 1e-3
    exploding: float = 1e3
    dead: float = 0.5
    saturated: float = 0.5
    update_low: float = 1e-5
    update_high: float = 1e-1


GRADIENT_ADVICE = "add batch normalisation or use a proper weight initialisation (He for ReLU)"


def _warning(kind, layer, message) -> dict:
    return {"kind": kind, "layer": layer, "message": f"{kind.replace('_', ' ')} in {layer!r}: "
                                                      f"{message}"}


def gradient_warnings(rows, limits: Thresholds) -> list[dict]:
    """Vanishing and exploding gradients, relative to the last layer with weights (``rows``: the
    per-layer records of one step, in execution order)."""
    weighted = [r for r in rows if r.get("w_grad_rms") is not None]
    if len(weighted) < 2 or not weighted[-1]["w_grad_rms"]:
        return []
    last = weighted[-1]
    out = []
    for r in weighted[:-1]:
        ratio = r["w_grad_rms"] / last["w_grad_rms"]
        numbers = (f"RMS dE/dω = {r['w_grad_rms']:.2e} is {ratio:.1e} × that of the last layer "
                   f"{last['layer']!r} ({last['w_grad_rms']:.2e})")
        if ratio < limits.vanishing:
            out.append(_warning("vanishing_gradients", r["layer"], f"{numbers}; {GRADIENT_ADVICE}"))
        elif ratio > limits.exploding:
            out.append(_warning("exploding_gradients", r["layer"],
                                f"{numbers}; {GRADIENT_ADVICE}, or clip the gradient"))
    return out


def unit_warnings(row, limits: Thresholds) -> list[dict]:
    """Dead ReLU and saturated sigmoid/tanh layers."""
    out = []
    dead, saturated = row.get("act_dead"), row.get("act_saturated")
    if dead is not None and dead > limits.dead:
        out.append(_warning("dead_relu", row["layer"],
                            f"{100 * dead:.0f}% of its channels are 0 everywhere on the batch (no "
                            f"gradient reaches their filters); lower the learning rate, use He "
                            f"initialisation or a leaky ReLU"))
    if saturated is not None and saturated > limits.saturated:
        out.append(_warning("saturated", row["layer"],
                            f"{100 * saturated:.0f}% of its outputs are in the flat tails where "
                            f"the derivative is < 0.01; normalise the inputs, use a smaller "
                            f"initialisation or ReLU"))
    return out


def update_warnings(row, limits: Thresholds, lr_fraction: float = 1.0) -> list[dict]:
    """An update-to-weight ratio ‖Δω‖/‖ω‖ far from ~1e-3. The ratio grows with η, so a small one
    is judged at the schedule's starting rate, ratio / (η_t/η_0): a schedule that anneals η on
    purpose (cosine, step, 1/t) is not told to raise it."""
    ratio = row.get("update_ratio")
    if ratio is None:
        return []
    low = ratio / lr_fraction if lr_fraction > 0 else ratio
    if low >= limits.update_low and ratio <= limits.update_high:
        return []
    advice = "lower" if ratio > limits.update_high else "raise"
    return [_warning("update_ratio", row["layer"],
                     f"‖Δω‖/‖ω‖ = {ratio:.1e}, far from ~1e-3; {advice} the learning rate")]


def warnings_for(rows, limits: Thresholds | None = None, lr_fraction: float = 1.0) -> list[dict]:
    """Every warning of one step's per-layer records; ``lr_fraction`` is η_t/η_0 of the schedule."""
    limits = limits or Thresholds()
    out = gradient_warnings(rows, limits)
    for row in rows:
        out += unit_warnings(row, limits) + update_warnings(row, limits, lr_fraction)
    return out
