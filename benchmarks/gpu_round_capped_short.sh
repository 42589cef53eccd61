#!/usr/bin/env bash
# The short form of gpu_round_capped_default.sh (timeouts sum to 350 s), for a lease with little
# device time left: the GPU tests of the Cheri kernels and the Cherimoya model with the capped
# configs and EVEN tiles on (the default), the bf16 sweep with --twins (each capped config also
# without its cap), then the model's inference rows.
#
#   bash benchmarks/gpu_round_capped_short.sh [OUTDIR]
source "$(dirname "$0")/_gpu_round_prelude.sh"
unset STRANDWISE_CAPPED_CONFIGS
timeout 210 python -m pytest -q -m gpu tests/kernels/test_cheri_infer.py tests/kernels/test_cheri_even_tiles.py \
    tests/kernels/test_cheri_train.py tests/models/test_cherimoya_gpu.py 2>&1 | tee "$OUTDIR/tests_gpu.log" | tail -6
timeout 60 python benchmarks/sweep_cheri_infer.py --space tuned --stages 3 --twins --dtypes bf16 \
    --out "$OUTDIR/sweep_cheri_infer_twins.json" 2>&1 | tail -20
timeout 80 python benchmarks/bench_cherimoya_model.py --modes eager --dtypes bf16,fp32 --infer-only --no-plain \
    --out "$OUTDIR/cherimoya_model_infer.json" 2>&1 | tail -10
