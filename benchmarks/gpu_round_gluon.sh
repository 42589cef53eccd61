#!/usr/bin/env bash
# One device call (timeouts sum to 510 s): the Gluon inference kernel's parity tests and its
# timings against the Triton megakernel, then the CUDA-graph training step of `fit`
# (TrainConfig.cuda_graph) — its GPU tests and its throughput against the eager step.
# The rest of the round (model-level figures, the fused-block tests a timed-out round left
# unrun) is benchmarks/gpu_round_gluon_model.sh.
#
#   bash benchmarks/gpu_round_gluon.sh [OUTDIR]
source "$(dirname "$0")/_gpu_round_prelude.sh"
timeout 140 python -m pytest -q -m gpu tests/kernels/test_cheri_infer_gluon.py 2>&1 | tee "$OUTDIR/tests_gluon.log" | tail -15
timeout 90 python benchmarks/bench_cheri_infer_gluon.py --warps 8,4,8h128,8c --out "$OUTDIR/cheri_infer_gluon.json" 2>&1 | tail -12
timeout 160 python -m pytest -q -m gpu tests/train/test_cuda_graph_fit.py 2>&1 | tee "$OUTDIR/tests_fit_graph.log" | tail -15
timeout 120 python benchmarks/bench_fit_step.py --n 2048 --out "$OUTDIR/fit_step.json" 2>&1 | tail -6
