# Sourced by the device_check_*.sh scripts: $OUT (default: $PWD/$DEFAULT_OUT), PYTHONPATH for the checkout,
# $PYTHON, status=0, and the machine's record ($OUT/nvidia-smi.txt, $OUT/torch.txt).
set -u
OUT=${OUT:-$PWD/$DEFAULT_OUT}
mkdir -p "$OUT"
export PYTHONPATH=$PWD:$PWD/plugins${PYTHONPATH:+:$PYTHONPATH}
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
status=0

nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
"$PYTHON" -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))" \
  2>&1 | tee "$OUT/torch.txt"
