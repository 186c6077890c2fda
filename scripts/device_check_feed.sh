#!/usr/bin/env bash
# Issue 24 item 3 on a lent GPU, in one go: the feed's CUDA tests (host-resident batches read ahead, pinned and
# copied, equal to device-resident ones and to the CPU's; no host sync in a step with read-ahead on), then
# `ganzoo bench --feed` on CUDA (64, 256 and 1024 px from synthetic prepared datasets) and a DCGAN 64x64
# training case whose `reference` row reads host data ahead, with its data wait. Results under $OUT.
#
#   OUT=/some/folder bash scripts/device_check_feed.sh     # from the repository root; PYTHON=... to pick one
#
# Writes $OUT/nvidia-smi.txt, torch.txt, pytest-cuda.txt, bench-feed-cuda.{json,md,log}. About two minutes on
# an H100. Every step runs even if one before it fails; the exit status is 1 if any failed.
DEFAULT_OUT=device-check-feed
source "$(dirname "$0")/device_common.sh"

timeout 240 "$PYTHON" -m pytest -q -p no:cacheprovider -m cuda -rs \
  tests/test_feed.py tests/test_cuda_sync.py 2>&1 | tee "$OUT/pytest-cuda.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

timeout 300 "$PYTHON" -m ganzoo.cli bench dcgan --size full --batch-size 128 --variants reference,device-data \
  --no-inference --feed --device cuda --warmup 10 --steps 50 \
  --json "$OUT/bench-feed-cuda.json" --markdown "$OUT/bench-feed-cuda.md" 2>&1 | tee "$OUT/bench-feed-cuda.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

exit $status
