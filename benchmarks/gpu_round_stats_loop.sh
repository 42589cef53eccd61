#!/usr/bin/env bash
# Device call (either GPU kind; timeouts sum to 530 s): the looped statistics pass
# (STRANDWISE_STATS_LOOP = k row tiles a program; experimental, default 0). Round 19's profile put
# the statistics pass at 18 % of the whole model's bf16 inference on an H100 (1.219 of 6.887 ms a
# call, ~61 % of DRAM bandwidth); each element is read three times from L2 (the ±D taps), which is
# what walking consecutive tiles in one program may turn into L1 hits.
# 1. GPU parity of the looped variant (k 2 and 8; bf16, fp32; four shapes incl. the model's);
# 2. the pass alone at the model's width (C 128) and the spec shape, bf16, across dilations:
#    examples-first / rows-first (today's kernel, both orders) against k = 2, 4, 8;
# 3. the whole model's bf16 inference at batch 512 with k = 0 (default) and k = 4, one process each.
# If a k wins at every dilation and in the model, make it the default (conv_norm_triton._STATS).
#
#   bash benchmarks/gpu_round_stats_loop.sh [OUTDIR]
source "$(dirname "$0")/_gpu_round_prelude.sh"
unset STRANDWISE_STATS_LOOP STRANDWISE_STATS_ROWS_FIRST
timeout 120 python -m pytest -q -m gpu tests/kernels/test_conv_norm_stats.py -k loop 2>&1 \
    | tee "$OUTDIR/tests_stats_loop.log" | tail -2
timeout 200 python benchmarks/probe_stats_grid.py --shapes "512,2114,128;512,1024,128" --dtypes bf16 \
    --dilations 1,4,16,64,256 --loops 2,4,8 --out "$OUTDIR/stats_loop_probe.json" 2>&1 | tail -10
for k in 0 4; do
  STRANDWISE_STATS_LOOP=$k timeout 105 python benchmarks/bench_cherimoya_model.py --modes eager --dtypes bf16 \
      --infer-only --no-plain --no-graph --out "$OUTDIR/cherimoya_model_infer_statsloop$k.json" 2>&1 \
      | tail -3 | sed "s/^/[loop=$k] /"
done
