#!/usr/bin/env bash
# One device call on an H100/H200 (its timeouts sum to 560 s, under the 10-minute limit) for the
# fused Cheri training block: its GPU tests, then its figures (probe, model step, the block table),
# in that order so that a call cut short by the device budget keeps the first parts. Writes at most 8 files into
# OUTDIR (default $OUT, the device tool's output folder).
#
#   bash benchmarks/gpu_round_cheri_train.sh [OUTDIR]
set -u
OUTDIR=${1:-${OUT:-gpu_round_out}}
mkdir -p "$OUTDIR"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
# 1. the fused training block (parity vs float64, vs the unfused path, first call, dispatch, model)
timeout 200 python -m pytest -q -m gpu tests/kernels/test_cheri_train.py 2>&1 | tee "$OUTDIR/tests_cheri_train.log" | tail -15
# 2. figures: the block at the spec shape (fused vs unfused, per-kernel table), the model's step
timeout 80 python benchmarks/probe_cheri_train.py --json "$OUTDIR/probe_cheri_train.json" 2>&1 | tee "$OUTDIR/probe_cheri_train.log" | tail -30
timeout 110 python benchmarks/bench_cherimoya_model.py --modes eager --dtypes bf16,bf16+unfused --train-only \
    --no-plain --iters 10 --out "$OUTDIR/cherimoya_model_train_fused.json" 2>&1 | tail -12
# 3. the official block table's rows with the fused path (on an H200 this decides the 1.6 ms target)
timeout 170 python benchmarks/bench_cheri_block.py --no-compile --out "$OUTDIR/cheri_block.json" 2>&1 | tail -20
