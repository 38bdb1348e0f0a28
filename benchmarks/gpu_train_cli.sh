#!/usr/bin/env bash
# Training through the command line on a CUDA GPU, as a user runs it (the monitor and its NaN probe
# attached): the main job eager and as a CUDA graph, and the keypoints example for 30 epochs.
# SRC (default src) picks the source tree, so that two versions can be timed in one device call;
# MAIN=0 skips the main job; GRAPH=1 runs the keypoints example a second time with --cuda-graph
# (its η and α ramp every step: since the thirteenth session the graph reads them from device
# scalars instead of being captured anew every batch).
# Needs local_data/mnist.npz and local_data/faces68_96.npz (benchmarks/gpu_prepare.sh) and the
# wheels of gpu_run.sh installed in /tmp/site.
set -uo pipefail
SRC=${SRC:-src}; OUT=${OUT:-gpu_out}; TAG=${TAG:-now}; mkdir -p "$OUT"
export PYTHONPATH=/tmp/site:$SRC PYTHONUNBUFFERED=1
log="$OUT/train_cli_cuda_$TAG.txt"
for flags in "--device cuda" "--device cuda --cuda-graph"; do
  [ "${MAIN:-1}" = 0 ] && break
  echo "== main job: convscope train $flags" | tee -a "$log"
  timeout 60 python3 -m convscope.cli train $flags --data-dir local_data --out /tmp/runs_$TAG \
    --name main --no-report 2>&1 | grep -E "^epoch (1|5|10) |test|done" | tee -a "$log"
done
keypoint_flags=("--device cuda")
[ "${GRAPH:-0}" = 1 ] && keypoint_flags+=("--device cuda --cuda-graph")
for flags in "${keypoint_flags[@]}"; do
  echo "== keypoints: convscope train configs/keypoints_net2.yaml --epochs 30 $flags" | tee -a "$log"
  timeout 120 python3 -m convscope.cli train configs/keypoints_net2.yaml --epochs 30 $flags \
    --data-dir local_data --out /tmp/runs_$TAG --name kp --no-report 2>&1 \
    | grep -E "^epoch (1|2|10|20|30) |test|done|rror" | tee -a "$log"
done
