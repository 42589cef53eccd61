#!/usr/bin/env bash
# One device call (timeouts sum to 510 s): the opt-in fused fp32 training block
# (STRANDWISE_FUSED_FP32) — its parity tests against float64 for each product precision, then the
# fp32 rows of the block table (N=512, L=1024, C=128, d=4) with the default cuBLAS path (0) and
# each precision, TF32 off and on.
#
#   bash benchmarks/gpu_round_fp32_fused.sh [OUTDIR]
source "$(dirname "$0")/_gpu_round_prelude.sh"
timeout 150 python -m pytest -q -m gpu tests/kernels/test_cheri_train.py -k fp32 2>&1 | tee "$OUTDIR/tests_fp32_fused.log" | tail -3
for p in 0 tf32x3 bf16x3 bf16x6; do
  STRANDWISE_FUSED_FP32=$p timeout 90 python benchmarks/bench_cheri_block.py --no-compile --dtypes fp32,fp32+tf32 \
      --out "$OUTDIR/cheri_block_fp32_$p.json" 2>&1 | grep -E "^fp32.*strandwise" | head -8
done
