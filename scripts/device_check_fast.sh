#!/usr/bin/env bash
# Issue 17 on a lent GPU, in one go: the CUDA tests of the fast path (no host syncs in a step under
# torch.cuda.set_sync_debug_mode("error"), the trainer's GPU paths, the reference loops on CUDA), then the
# benchmark suite's CUDA list (benchmarks/suite.json: reference loop, reference, every optimisation alone,
# default and fast; DCGAN 32x32/64x64 at batch 128, CycleGAN 256x256 at batch 1 and 8, StyleGAN-lite 256x256
# at batch 16 and 32), then the measured defaults for CUDA chosen from it. Results under $OUT.
#
#   OUT=/some/folder bash scripts/device_check_fast.sh     # from the repository root; PYTHON=... to pick one
#
# Writes $OUT/nvidia-smi.txt, torch.txt, pytest-cuda.txt, the suite's DEVICE-suite.{json,md} and suite.log,
# bench-DEVICE.png, and measured_defaults.json (copy it over ganzoo/data/measured_defaults.json to adopt it).
# Every step runs even if one before it fails; the exit status is 1 if any failed. SUITE_ONLY=dcgan limits the
# suite to one architecture when device time is short.
DEFAULT_OUT=device-check-fast
source "$(dirname "$0")/device_common.sh"

timeout 300 "$PYTHON" -m pytest -q -p no:cacheprovider -m cuda -rs \
  tests/test_cuda_sync.py tests/test_cuda.py tests/test_stylegan_reference_loop.py \
  2>&1 | tee "$OUT/pytest-cuda.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

timeout 1200 "$PYTHON" benchmarks/run_suite.py --device cuda --results "$OUT" ${SUITE_ONLY:+--only $SUITE_ONLY} \
  2>&1 | tee "$OUT/suite.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
cp docs/images/bench-*.png "$OUT/" 2>/dev/null

for record in "$OUT"/*-suite.json; do
  [ -e "$record" ] || continue
  cp ganzoo/data/measured_defaults.json "$OUT/measured_defaults.json"
  "$PYTHON" benchmarks/choose_defaults.py "$record" --out "$OUT/measured_defaults.json" || status=1
done

exit $status
