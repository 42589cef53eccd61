#!/usr/bin/env bash
# One device call (timeouts sum to 500 s), after the register-capped configs and EVEN tiles became
# the default (STRANDWISE_CAPPED_CONFIGS unset), most important first so that a call with less
# time keeps what ran (each step writes into OUTDIR as it finishes; the first three fit 380 s):
# the GPU tests of the Cheri kernels and the Cherimoya model; a sweep of the tuned configs
# with 3 stages, bf16 and fp32 input, each capped config also without its cap (--twins: what the cap
# alone buys; for fp32 input the capped 4-warp tile spills 328 B offline, its twin does not); the
# model's inference rows (bf16 and fp32, eager); the fp32 block table (fp32 inference, training
# forward, forward+backward).
#
#   bash benchmarks/gpu_round_capped_default.sh [OUTDIR]
source "$(dirname "$0")/_gpu_round_prelude.sh"
unset STRANDWISE_CAPPED_CONFIGS
timeout 210 python -m pytest -q -m gpu tests/kernels/test_cheri_infer.py tests/kernels/test_cheri_even_tiles.py \
    tests/kernels/test_cheri_train.py tests/models/test_cherimoya_gpu.py 2>&1 | tee "$OUTDIR/tests_gpu.log" | tail -6
timeout 90 python benchmarks/sweep_cheri_infer.py --space tuned --stages 3 --twins --dtypes bf16,fp32 \
    --out "$OUTDIR/sweep_cheri_infer_twins.json" 2>&1 | tail -20
timeout 80 python benchmarks/bench_cherimoya_model.py --modes eager --dtypes bf16,fp32 --infer-only --no-plain \
    --out "$OUTDIR/cherimoya_model_infer.json" 2>&1 | tail -10
timeout 120 python benchmarks/bench_cheri_block.py --no-compile --dtypes fp32 --out "$OUTDIR/cheri_block_fp32.json" 2>&1 \
    | grep -E "^fp32" | grep -v plain
