#!/usr/bin/env bash
# One device call (timeouts sum to 300 s): the CUDA-graph training step's GPU tests
# (tests/train/test_cuda_graph_fit.py), then the two fused-block GPU tests a timed-out round
# left unrun.
#
#   bash benchmarks/gpu_round_fit_graph.sh [OUTDIR]
source "$(dirname "$0")/_gpu_round_prelude.sh"
timeout 170 python -m pytest -q -s -m gpu tests/train/test_cuda_graph_fit.py 2>&1 | tee "$OUTDIR/tests_fit_graph.log" | grep -E "passed|failed|FAILED|Error|assert|max\|" | tail -12
timeout 130 python -m pytest -q -m gpu tests/kernels/test_cheri_train.py -k "direct_launches or fused_vs_unfused" 2>&1 | tee "$OUTDIR/tests_cheri_train_rest.log" | tail -4
