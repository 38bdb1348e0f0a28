#!/usr/bin/env bash
# Prepares what benchmarks/gpu_run.sh needs on the device machine, which starts bare and reaches no
# registry: the pure-Python wheels its image lacks (in .whl), the MNIST file for the epoch timing and
# the faces for benchmarks/gpu_train_cli.sh (in local_data). Both folders are git-ignored; carry them: [".whl", "local_data"].
# Run from the repo root on the development machine, with ../shared beside it.
set -euo pipefail
mkdir -p .whl local_data
python3 -m pip download -q --no-deps --only-binary=:all: --dest .whl array-api-compat platformdirs nibabel threadpoolctl tqdm
cp -f ../shared/data/mnist.npz ../shared/data/faces68_96.npz local_data/
ls -l .whl local_data
