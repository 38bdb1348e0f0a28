"""``summary(net)``: per layer, the output size H×W×D, the parameters, the receptive field and the
stride in input pixels, and the multiply-adds per sample; totals at the bottom.

Receptive field r and stride (jump) s of a variable, per spatial axis, from the input's r = s = 1:
a layer with kernel H' and stride S gives r' = r + (H' − 1)·s and s' = s·S; pixelwise layers keep
(r, s); joins take the largest. (A deconvolution's upsampling is not tracked.)
"""

from __future__ import annotations

import math

from convscope.nn.layers import shape_str


def _geometry(net):
    """{variable: (receptive field, stride)} as per-axis tuples (None for flat variables)."""
    geo = {}
    for name, shape in net.inputs.items():
        geo[name] = ((1,) * (len(shape) - 1), (1,) * (len(shape) - 1)) if len(shape) > 1 else None
    for name in net.order():
        node = net.nodes[name]
        known = [geo[v] for v in node.inputs if geo.get(v)]
        if not known or node.layer.loss:
            geo[node.output] = None
            continue
        rf = tuple(max(g[0][a] for g in known) for a in range(len(known[0][0])))
        jump = tuple(max(g[1][a] for g in known) for a in range(len(known[0][1])))
        g = node.layer.geometry(net.shapes[node.inputs[0]])
        if g is not None:
            kernel, stride = g
            rf = tuple(r + (k - 1) * j for r, k, j in zip(rf, kernel, jump, strict=True))
            jump = tuple(j * s for j, s in zip(jump, stride, strict=True))
        geo[node.output] = (rf, jump)
    return geo


def summary_rows(net) -> list[dict]:
    """One dict per layer: name, type, output, params, receptive field, stride, madds."""
    geo = _geometry(net)
    rows = []
    for name in net.order():
        node = net.nodes[name]
        in_shapes = [net.shapes[v] for v in node.inputs]
        out = net.shapes[node.output]
        g = geo.get(node.output)
        rows.append({
            "layer": name,
            "type": type(node.layer).__name__,
            "output": shape_str(out),
            "params": sum(math.prod(p.value.shape) for p in node.layer.params.values() if p.trainable),
            "rf": "×".join(map(str, g[0])) if g else "",
            "stride": "×".join(map(str, g[1])) if g else "",
            "madds": node.layer.madds(in_shapes, out),
        })
    return rows


def summary(net) -> str:
    """The summary table as text (the lecture's notation; sizes per sample, N left out)."""
    rows = summary_rows(net)
    head = {"layer": "layer", "type": "type", "output": "output H×W×D", "params": "params",
            "rf": "receptive field", "stride": "stride", "madds": "multiply-adds"}
    cells = [head] + [{k: f"{v:,}" if isinstance(v, int) else v for k, v in r.items()}
                      for r in rows]
    total = {"layer": "total", "type": "", "output": "", "rf": "", "stride": "",
             "params": f"{sum(r['params'] for r in rows):,}",
             "madds": f"{sum(r['madds'] for r in rows):,}"}
    widths = {k: max(len(c[k]) for c in [*cells, total]) for k in head}
    right = {"params", "madds"}

    def line(c):
        return "  ".join(c[k].rjust(widths[k]) if k in right else c[k].ljust(widths[k])
                         for k in head).rstrip()

    rule = "-" * len(line(head))
    inputs = ", ".join(f"{k} {shape_str(v)}" for k, v in net.inputs.items())
    return "\n".join([f"inputs: {inputs}", line(head), rule, *map(line, cells[1:]), rule,
                      line(total)]) + "\n"


