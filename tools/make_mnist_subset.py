"""Build the MNIST subset that ships inside convscope (``src/convscope/_bundled/``).

From the full MNIST in ``shared/data/mnist.npz`` (60,000 training and 10,000 test images), draw a
stratified, seeded subset: 10,000 training and 2,000 test images, each class in the proportion it
has in its split (largest-remainder rounding), in random order. Written with
``numpy.savez_compressed`` (no pickle) together with a JSON file stating the source, its sha256, the
seed and the class counts, so the subset can be rebuilt and checked.

    python tools/make_mnist_subset.py [--source shared/data/mnist.npz]
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "convscope" / "_bundled"
SIZES = {"train": 10_000, "test": 2_000}
SEED = 20240611


def stratified_indices(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` indices into ``labels`` keeping each class's share (largest remainder), shuffled."""
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * size / counts.sum()
    take = np.floor(exact).astype(int)
    take[np.argsort(exact - take)[::-1][: size - take.sum()]] += 1
    picked = [rng.choice(np.flatnonzero(labels == c), n, replace=False)
              for c, n in zip(classes, take, strict=True)]
    return rng.permutation(np.concatenate(picked))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "data" / "mnist.npz")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(SEED)
    arrays, info = {}, {"source": "mnist.npz", "seed": SEED, "counts": {}}
    info["source_sha256"] = hashlib.sha256(args.source.read_bytes()).hexdigest()
    with np.load(args.source, allow_pickle=False) as d:
        for split, size in SIZES.items():
            x, y = d[f"x_{split}"], d[f"y_{split}"]
            idx = stratified_indices(y, size, rng)
            arrays[f"x_{split}"] = x[idx][..., None].astype(np.uint8)  # N×28×28×1
            arrays[f"y_{split}"] = y[idx].astype(np.int64)
            arrays[f"index_{split}"] = idx.astype(np.int64)
            info["counts"][split] = np.bincount(y[idx], minlength=10).tolist()
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT / "mnist_subset.npz", **arrays)
    info["description"] = ("MNIST subset: 10,000 training and 2,000 test images (28×28×1, "
                           "uint8), stratified from the original splits")
    info["names"] = [str(d) for d in range(10)]
    (OUT / "mnist_subset.json").write_text(json.dumps(info, indent=1, ensure_ascii=False) + "\n",
                                              encoding="utf-8")
    print(f"wrote {OUT / 'mnist_subset.npz'} ({(OUT / 'mnist_subset.npz').stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
