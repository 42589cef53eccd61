#!/usr/bin/env bash
# One device call (timeouts sum to 520 s), after the register-capped configs and EVEN tiles became
# the default (STRANDWISE_CAPPED_CONFIGS unset) and GELU(tanh) was rewritten for fused
# multiply-adds, most important first so that a call with less time keeps what ran (each step
# writes into OUTDIR as it finishes):
# 1. the GPU tests of the Cheri kernels, the stem kernel and the Cherimoya model (the capped backward candidates
#    and the new GELU forms have not run on a GPU before);
# 2. a sweep of the tuned configs with 3 stages, bf16 and fp32 input, each capped config also
#    without its cap (--twins; for fp32 input the capped 4-warp tile spills 328 B offline, its
#    twin does not), each run A/B against the earlier GELU form (--gelu-ab);
# 3. the bf16 block table (inference, training forward, forward+backward; 1.6 ms target).
#
#   bash benchmarks/gpu_round_capped_default.sh [OUTDIR]
source "$(dirname "$0")/_gpu_round_prelude.sh"
unset STRANDWISE_CAPPED_CONFIGS
timeout 210 python -m pytest -q -m gpu tests/kernels/test_cheri_infer.py tests/kernels/test_cheri_even_tiles.py \
    tests/kernels/test_cheri_train.py tests/kernels/test_stem.py tests/models/test_cherimoya_gpu.py 2>&1 | tee "$OUTDIR/tests_gpu.log" | tail -6
timeout 150 python benchmarks/sweep_cheri_infer.py --space tuned --stages 3 --twins --gelu-ab --dtypes bf16,fp32 \
    --out "$OUTDIR/sweep_cheri_infer_twins_gelu_ab.json" 2>&1 | tail -24
timeout 160 python benchmarks/bench_cheri_block.py --no-compile --dtypes bf16 --out "$OUTDIR/cheri_block_bf16.json" 2>&1 \
    | grep -E "^bf16" | grep -v plain
