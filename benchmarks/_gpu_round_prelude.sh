# Sourced by the gpu_round_*.sh / ncu_round.sh scripts (with their arguments): OUTDIR = the first
# argument, else $OUT (the device tool's output folder), else gpu_round_out; PYTHONPATH at the
# repository root; unbuffered Python; the GPU's name and driver first in the log.
set -u
OUTDIR=${1:-${OUT:-gpu_round_out}}
mkdir -p "$OUTDIR"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
