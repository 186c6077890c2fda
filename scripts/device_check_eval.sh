#!/usr/bin/env bash
# Issue 14 item 5 on a lent GPU, in one go: the extractors' CUDA tests, then `ganzoo bench --eval` on CUDA
# (fmnist, inception, dinov2 in fp32, bf16 and fp16; random weights where none are cached), results under $OUT.
#
#   OUT=/some/folder bash scripts/device_check_eval.sh     # from the repository root; PYTHON=... to pick one
#
# Writes $OUT/nvidia-smi.txt, torch.txt, pytest-cuda.txt and bench-eval-cuda.{json,md,log}. A few minutes
# on an H100/H200 (ViT-L at batch 64, FD sets of 2000 images). Both steps run even if the first fails;
# the exit status is 1 if either failed.
DEFAULT_OUT=device-check-eval
source "$(dirname "$0")/device_common.sh"

timeout 300 "$PYTHON" -m pytest -q -p no:cacheprovider -m cuda -rs \
  tests/test_extractor_precision.py tests/test_bench_eval.py 2>&1 | tee "$OUT/pytest-cuda.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

timeout 420 "$PYTHON" -m ganzoo.cli bench --no-training --no-inference --eval --device cuda \
  --json "$OUT/bench-eval-cuda.json" --markdown "$OUT/bench-eval-cuda.md" 2>&1 | tee "$OUT/bench-eval-cuda.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

exit $status
