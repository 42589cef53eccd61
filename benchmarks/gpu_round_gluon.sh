#!/usr/bin/env bash
# One device call: the two fused-block GPU tests a timed-out round left unrun, the Gluon inference
# kernel's parity tests, then its timings against the Triton megakernel (block and whole model).
set -u
OUTDIR=${1:-${OUT:-gpu_round_out}}
mkdir -p "$OUTDIR"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
timeout 100 python -m pytest -q -m gpu tests/kernels/test_cheri_infer_gluon.py 2>&1 | tee "$OUTDIR/tests_gluon.log" | tail -15
timeout 60 python benchmarks/bench_cheri_infer_gluon.py --warps 8,4 --out "$OUTDIR/cheri_infer_gluon.json" 2>&1 | tail -8
timeout 120 python -m pytest -q -m gpu tests/kernels/test_cheri_train.py -k "direct_launches or fused_vs_unfused" 2>&1 | tee "$OUTDIR/tests_cheri_train_rest.log" | tail -4
for g in 0 1; do STRANDWISE_GLUON_INFER=$g timeout 70 python benchmarks/bench_cherimoya_model.py --modes eager --dtypes bf16,fp32 --infer-only --no-plain --iters 10 --out "$OUTDIR/model_infer_gluon$g.json" 2>&1 | grep -E "infer|seq" | tail -6; done
