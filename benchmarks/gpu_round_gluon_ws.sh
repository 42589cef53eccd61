#!/usr/bin/env bash
# Cherimoya round 17 (either GPU kind; timeouts sum to 590 s): the warp-specialised Gluon MLP pass
# (cheri_infer_gluon.mlp_kernel_gluon_ws: 2 or 3 one-warpgroup partitions a program sharing the
# resident weights, x̂ through shared memory):
# 1. its GPU parity (spec-shape channels, unmasked; a ragged masked shape) and the plain Gluon
#    kernel's (its addressing changed: tile base + int32 offsets);
# 2. the whole inference call at N=512, L=1024, C=128, d=4, bf16 and fp32 input, Triton vs Gluon
#    variants;
# 3. round 16's pending GPU tests (statistics grid orders; three whole-model tests).
#
#   bash benchmarks/gpu_round_gluon_ws.sh [OUTDIR]
source "$(dirname "$0")/_gpu_round_prelude.sh"
unset STRANDWISE_CAPPED_CONFIGS STRANDWISE_STATS_ROWS_FIRST
timeout 170 python -m pytest -q -m gpu tests/kernels/test_cheri_infer_gluon.py -x \
    -k "(warp_specialised and 1024-128) or (warp_specialised and 37-32 and bf16) or (test_gluon_matches and (1024 or 37))" 2>&1 \
    | tee "$OUTDIR/tests_gluon_ws.log" | tail -4
timeout 190 python benchmarks/bench_cheri_infer_gluon.py --warps 8,ws3p0h32,ws3p1h32,ws3p0h64,ws2p1,ws2p0 \
    --out "$OUTDIR/cheri_infer_gluon_ws.json" 2>&1 | tail -16
timeout 80 python -m pytest -q -m gpu tests/kernels/test_conv_norm_stats.py 2>&1 | tee "$OUTDIR/tests_stats.log" | tail -3
timeout 150 python -m pytest -v -m gpu tests/models/test_cherimoya_gpu.py -k "small_model or no_grad_vs_grad or ieee" 2>&1 \
    | tee "$OUTDIR/tests_model_rest.log" | grep -E "PASSED|FAILED|ERROR|passed|failed" | cut -c1-160 | tail -8
