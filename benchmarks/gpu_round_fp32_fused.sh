#!/usr/bin/env bash
# One device call (timeouts sum to 500 s): the opt-in fused fp32 training block
# (STRANDWISE_FUSED_FP32) — its parity tests against float64, one pytest process per product
# precision (a crash in one must not fail the others), then the fp32 rows of the block table
# (N=512, L=1024, C=128, d=4) with the default cuBLAS path (0) and each precision, TF32 off and on
# (autotuned, so the shared-memory pruning for fp32 operands is exercised too).
#
#   bash benchmarks/gpu_round_fp32_fused.sh [OUTDIR]
source "$(dirname "$0")/_gpu_round_prelude.sh"
for p in tf32x3; do
  echo "== tests $p"
  timeout 80 python -m pytest -q -m gpu tests/kernels/test_cheri_train.py -k "fp32 and $p" 2>&1 | tee "$OUTDIR/tests_fp32_fused_$p.log" | grep -E "^E  .*Error|passed|failed" | tail -4
done
timeout 40 python -m pytest -q -m gpu tests/kernels/test_cheri_train.py -k "conv_norm_bwd_residual" 2>&1 | tail -1
for p in tf32x3; do
  STRANDWISE_FUSED_FP32=$p timeout 100 python benchmarks/bench_cheri_block.py --no-compile --dtypes fp32,fp32+tf32 \
      --out "$OUTDIR/cheri_block_fp32_$p.json" > "$OUTDIR/bench_$p.log" 2>&1
  echo "== bench $p rc=$?"; grep -E "^fp32.*(fwd_bwd|train_fwd)" "$OUTDIR/bench_$p.log" | grep -v plain; grep -E "Error" "$OUTDIR/bench_$p.log" | tail -2
done
