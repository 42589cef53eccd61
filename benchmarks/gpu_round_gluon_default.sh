#!/usr/bin/env bash
# Cherimoya round 17, second call (either GPU kind; timeouts sum to 540 s): the warp-specialised
# Gluon MLP pass as the default for bf16/fp16 input on sm_90:
# 1. Gluon parity (default configuration, five shapes x three dtypes; the plain 8-warp kernel);
# 2. the inference GPU tests with the new default (test_cheri_infer.py, both backends for
#    half-precision input), the HALF_W2 entry-point test, the model's GPU tests;
# 3. the whole model's inference at batch 512, bf16 and fp32, eager and CUDA graph (default
#    dispatch) and bf16 with the Gluon pass switched off, same process.
#
#   bash benchmarks/gpu_round_gluon_default.sh [OUTDIR]
source "$(dirname "$0")/_gpu_round_prelude.sh"
unset STRANDWISE_CAPPED_CONFIGS STRANDWISE_STATS_ROWS_FIRST STRANDWISE_GLUON_INFER
timeout 150 python -m pytest -q -m gpu tests/kernels/test_cheri_infer_gluon.py -k "test_gluon_matches or test_plain_gluon_kernel" 2>&1 \
    | tee "$OUTDIR/tests_gluon_default.log" | tail -3
timeout 130 python -m pytest -q -m gpu tests/kernels/test_cheri_infer.py tests/kernels/test_cheri_half_w2.py -k "not half_w2_bit_identical" 2>&1 \
    | tee "$OUTDIR/tests_infer.log" | tail -3
timeout 130 python -m pytest -q -m gpu tests/models/test_cherimoya_gpu.py 2>&1 | tee "$OUTDIR/tests_model.log" | tail -3
for g in auto 0; do
  if [ "$g" = 0 ]; then export STRANDWISE_GLUON_INFER=0; dts=bf16; else unset STRANDWISE_GLUON_INFER; dts=bf16,fp32; fi
  timeout 65 python benchmarks/bench_cherimoya_model.py --modes eager --dtypes $dts --infer-only --no-plain \
      --out "$OUTDIR/cherimoya_model_infer_gluon_$g.json" 2>&1 | grep "^infer" | sed "s/^/[gluon=$g] /"
done
