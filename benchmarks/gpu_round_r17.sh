#!/usr/bin/env bash
# Next device call after Cherimoya round 16 (either GPU kind; timeouts sum to 560 s):
# 1. the statistics GPU tests as committed (both grid orders forced; the model shape at d 128) and
#    the whole-model GPU tests not run since the ninth session (small model, no-grad vs grad,
#    exact ieee products);
# 2. the whole model with the statistics' grid order by dilation against the old order
#    (STRANDWISE_STATS_ROWS_FIRST=0), two processes one after the other: bf16 and fp32
#    inference at batch 512 and the training step at batch 64, eager and CUDA graph, plain
#    baselines off.
# Branch stats-order-siblings (the unfused output pass and the backward's sums in the same order)
# needs its own call after it is merged: its GPU tests, then
# `python benchmarks/probe_stats_grid.py --all --shapes 512,2114,96 --dilations 4,64,256`.
#
#   bash benchmarks/gpu_round_r17.sh [OUTDIR]
source "$(dirname "$0")/_gpu_round_prelude.sh"
unset STRANDWISE_CAPPED_CONFIGS STRANDWISE_STATS_ROWS_FIRST
timeout 80 python -m pytest -q -m gpu tests/kernels/test_conv_norm_stats.py 2>&1 | tee "$OUTDIR/tests_stats.log" | tail -3
timeout 120 python -m pytest -v -m gpu tests/models/test_cherimoya_gpu.py -k "small_model or no_grad_vs_grad or ieee" 2>&1 \
    | tee "$OUTDIR/tests_model_rest.log" | grep -E "PASSED|FAILED|ERROR|passed|failed" | cut -c1-160 | tail -8
for order in auto old; do
  if [ "$order" = old ]; then export STRANDWISE_STATS_ROWS_FIRST=0; else unset STRANDWISE_STATS_ROWS_FIRST; fi
  timeout 180 python benchmarks/bench_cherimoya_model.py --modes eager --dtypes bf16,fp32 --no-plain --iters 10 \
      --out "$OUTDIR/cherimoya_model_order_$order.json" 2>&1 | tail -10 | sed "s/^/[$order] /"
done
