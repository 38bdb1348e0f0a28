"""``summary(net)``: per layer, the output size H×W×D, the parameters, the receptive field and the
stride in input pixels, and the multiply-adds per sample; totals at the bottom.

Receptive field r and stride (jump) s of a variable, per spatial axis, from the input's r = s = 1:
a layer with kernel H' and stride S gives r' = r + (H' − 1)·s and s' = s·S; pixelwise layers keep
(r, s); joins take the largest. A fully connected layer sees its whole input, also after a
``Flatten`` (its kernel is the extent of the map that was flattened). A deconvolution with kernel
H' and stride S (its upsampling) gives s' = s/S and r' = r + (⌈H'/S⌉ − 1)·s: each of its outputs
reads at most ⌈H'/S⌉ neighbouring inputs; a stride below one input pixel shows as a fraction
(``1/2``) and a receptive field is rounded up to whole pixels.
"""

from __future__ import annotations

import math
from fractions import Fraction

from convscope.nn.layers import ConvTranspose, FullyConnected, _tuple, shape_str


def _kernel_and_stride(layer, in_shape, extent):
    """(kernel, stride) of ``layer`` in its input's pixels, or None for a pixelwise layer."""
    dims = len(extent)
    if isinstance(layer, FullyConnected) and len(in_shape) == 1:
        return tuple(extent), (1,) * dims        # every output sees all of the flattened map
    return layer.geometry(in_shape)


def _geometry(net):
    """{variable: (receptive field, stride)} as per-axis tuples (None for variables with no
    spatial ancestry: labels, losses, flat inputs)."""
    geo, extents = {}, {}
    for name, shape in net.inputs.items():
        dims = len(shape) - 1
        geo[name] = ((1,) * dims, (1,) * dims) if dims > 0 else None
        extents[name] = tuple(shape[:-1])
    for name in net.order():
        node = net.nodes[name]
        known = [v for v in node.inputs if geo.get(v)]
        if not known or node.layer.loss:
            geo[node.output] = None
            continue
        dims = len(geo[known[0]][0])
        rf = tuple(max(geo[v][0][a] for v in known) for a in range(dims))
        jump = tuple(max(geo[v][1][a] for v in known) for a in range(dims))
        extent = tuple(max(extents[v][a] for v in known) for a in range(dims))
        layer, in_shape = node.layer, net.shapes[node.inputs[0]]
        if isinstance(layer, ConvTranspose):
            dil, size = _tuple(layer.dilate, dims), _tuple(layer.size, dims)
            up = _tuple(layer.stride, dims)
            reads = tuple(-(-(d * (k - 1) + 1) // s) for d, k, s in zip(dil, size, up, strict=True))
            rf = tuple(r + (n - 1) * j for r, n, j in zip(rf, reads, jump, strict=True))
            jump = tuple(Fraction(j) / s for j, s in zip(jump, up, strict=True))
        else:
            g = _kernel_and_stride(layer, in_shape, extent)
            if g is not None:
                kernel, stride = g
                rf = tuple(r + (k - 1) * j for r, k, j in zip(rf, kernel, jump, strict=True))
                jump = tuple(j * s for j, s in zip(jump, stride, strict=True))
        out = net.shapes[node.output]
        if len(out) == dims + 1:
            extents[node.output] = tuple(out[:-1])
        elif isinstance(layer, FullyConnected):
            extents[node.output] = (1,) * dims   # a flat fully connected output: one position
        else:
            extents[node.output] = extent        # Flatten, or a pixelwise layer on a flat map
        geo[node.output] = (rf, jump)
    return geo


def _axes(values, whole=False):
    """'5×5'; a fractional value as '1/2', or rounded up to whole pixels."""
    return "×".join(str(math.ceil(v) if whole else Fraction(v)) for v in values)


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
            "rf": _axes(g[0], whole=True) if g else "",
            "stride": _axes(g[1]) if g else "",
            "madds": node.layer.madds(in_shapes, out),
        })
    return rows


def summary(net) -> str:
    """The summary table as text (the lecture's notation; sizes per sample, N left out)."""
    rows = summary_rows(net)
    axes = "T×H×W×D" if any(len(shape) == 4 for shape in net.inputs.values()) else "H×W×D"
    head = {"layer": "layer", "type": "type", "output": f"output {axes}", "params": "params",
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


