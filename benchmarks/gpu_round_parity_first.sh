#!/usr/bin/env bash
# One device call (timeouts sum to 590 s) when GPU calls are scarce: the GPU parity tests of both
# offline-only changes first (GELU(tanh) in fused multiply-add form, Cherimoya round 14; the scan's
# true -0.0 masked sums, scan round 8), then the bf16 Cheri block table (1.6 ms target). Each
# step writes into OUTDIR as it finishes, so a call cut short keeps what ran.
#
#   bash benchmarks/gpu_round_parity_first.sh [OUTDIR]
source "$(dirname "$0")/_gpu_round_prelude.sh"
unset STRANDWISE_CAPPED_CONFIGS
timeout 200 python -m pytest -q -m gpu tests/kernels/test_cheri_infer.py tests/kernels/test_cheri_half_w2.py tests/kernels/test_cheri_even_tiles.py \
    tests/kernels/test_cheri_train.py tests/kernels/test_stem.py tests/models/test_cherimoya_gpu.py 2>&1 | tee "$OUTDIR/tests_gpu.log" | tail -6
STRANDWISE_SCAN_AUTOTUNE=0 timeout 160 python -m pytest -q -m gpu tests/kernels/test_selective_scan_triton.py \
    -k "parity_small or options or split_forced or long_gradients or atomic_sum" 2>&1 | tee "$OUTDIR/tests_scan.log" | tail -4
timeout 60 python -m pytest -q -m gpu tests/kernels/test_mamba_inner.py tests/kernels/test_selective_scan_triton.py \
    -k "mamba or first_call or direct_launch" 2>&1 | tee "$OUTDIR/tests_scan_inner.log" | tail -4
timeout 170 python benchmarks/bench_cheri_block.py --no-compile --dtypes bf16 --out "$OUTDIR/cheri_block_bf16.json" 2>&1 \
    | grep -E "^bf16" | grep -v plain
