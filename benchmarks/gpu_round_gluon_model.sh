#!/usr/bin/env bash
# Second device call of the Gluon round (timeouts sum to 430 s): the two fused-block GPU tests a
# timed-out round left unrun, whole-model inference with the Gluon MLP pass off and on, and the
# single-block table (on an H200 it decides the block targets).
#
#   bash benchmarks/gpu_round_gluon_model.sh [OUTDIR]
source "$(dirname "$0")/_gpu_round_prelude.sh"
timeout 120 python -m pytest -q -m gpu tests/kernels/test_cheri_train.py -k "direct_launches or fused_vs_unfused" 2>&1 | tee "$OUTDIR/tests_cheri_train_rest.log" | tail -4
for g in 0 1; do STRANDWISE_GLUON_INFER=$g timeout 70 python benchmarks/bench_cherimoya_model.py --modes eager --dtypes bf16,fp32 --infer-only --no-plain --iters 10 --out "$OUTDIR/model_infer_gluon$g.json" 2>&1 | grep -E "infer|seq" | tail -6; done
timeout 170 python benchmarks/bench_cheri_block.py --no-compile --out "$OUTDIR/cheri_block.json" 2>&1 | tail -22
