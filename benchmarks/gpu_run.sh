#!/usr/bin/env bash
# The GPU session of issue 5, as one script for the device machine (run from the repo root):
# install the pure-Python wheels the image lacks (carried in .whl), check the CUDA results against
# NumPy, then time the training steps. Outputs go to $OUT (or ./gpu_out). benchmarks/gpu_prepare.sh
# makes .whl and local_data on the development machine first. The timeouts below sum to 525 s, so
# the whole script fits one device call (600 s at most) and, with the machine's start, 15 minutes.
set -uo pipefail
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:src
else
  export PYTHONPATH=src
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, numpy; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), 'numpy', numpy.__version__)" | tee -a "$OUT/gpu.txt"
CONVSCOPE_TEST_DEVICE=cuda timeout 120 python3 -m pytest -rf -p no:cacheprovider tests/ops/test_torch_backend.py tests/train/test_devices.py 2>&1 | tail -25 | tee "$OUT/gpu_tests.txt"
timeout 60 python3 benchmarks/gpu_check.py 2>&1 | tee "$OUT/gpu_check.txt"
timeout 120 python3 benchmarks/train_step.py --device cuda --epoch --data-dir local_data --repeats 20 2>&1 | tee "$OUT/train_step_cuda.txt"
timeout 100 python3 benchmarks/train_step.py --device cuda --repeats 20 --chain 10 2>&1 | tee "$OUT/train_step_cuda_chain10.txt"
timeout 45 python3 benchmarks/host_profile.py --device cuda --models lenet5 cifar10_quick keypoints_net2 --kernels --replay 2>&1 | grep -v Warn | tee "$OUT/host_profile_cuda.txt"
# the main job on the GPU through the command line: eager, then with the whole step as a CUDA graph
for flags in "--device cuda" "--device cuda --cuda-graph"; do
  echo "convscope train $flags" | tee -a "$OUT/main_job_cuda.txt"
  timeout 40 python3 -m convscope.cli train $flags --data-dir local_data --out /tmp/runs --name main --no-report 2>&1 | tail -4 | tee -a "$OUT/main_job_cuda.txt"
done
