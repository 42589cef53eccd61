#!/usr/bin/env bash
# One device call (timeouts sum to 570 s) for the conv-norm backward's comb main pass: its GPU
# tests (conv-norm parity incl. every comb config, the fused block that calls it with the
# residual), the comb-vs-tile table over the model's dilations, then the fused block's figures.
#
#   bash benchmarks/gpu_round_conv_norm.sh [OUTDIR]
source "$(dirname "$0")/_gpu_round_prelude.sh"
timeout 120 python -m pytest -q -m gpu tests/kernels/test_conv_norm_triton.py 2>&1 | tee "$OUTDIR/tests_conv_norm.log" | tail -6
timeout 200 python benchmarks/bench_conv_norm_bwd.py --dtypes bf16 --json "$OUTDIR/conv_norm_bwd_bf16.json" 2>&1 | tail -22
timeout 60 python benchmarks/bench_conv_norm_bwd.py --dtypes fp32 --residual no --dilations 1,4,32,256 \
    --json "$OUTDIR/conv_norm_bwd_fp32.json" 2>&1 | tail -6
timeout 70 python benchmarks/probe_cheri_train.py --json "$OUTDIR/probe_cheri_train.json" 2>&1 | tee "$OUTDIR/probe_cheri_train.log" | grep -E "fwd\+bwd|_kernel|nvjet" | head -24
timeout 120 python -m pytest -q -m gpu tests/kernels/test_cheri_train.py 2>&1 | tee "$OUTDIR/tests_cheri_train.log" | tail -6
