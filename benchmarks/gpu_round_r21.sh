#!/usr/bin/env bash
# First device call of the next session (either GPU kind; timeouts sum to 570 s):
# 0. the count head's fp32-accumulating mean (committed after the last lease: not yet run on a
#    GPU): the whole-model GPU tests, and the bf16 profile (the 0.23 ms cast kernel should be gone;
#    round 19: 6.887 ms GPU time a call);
# then the looped statistics pass (STRANDWISE_STATS_LOOP = k row tiles a program; experimental,
# default 0). Round 19's profile put
# the statistics pass at 18 % of the whole model's bf16 inference on an H100 (1.219 of 6.887 ms a
# call, ~61 % of DRAM bandwidth); each element is read three times from L2 (the ±D taps), which is
# what walking consecutive tiles in one program may turn into L1 hits.
# 1. GPU parity of the looped variant (k 2 and 8; bf16, fp32; four shapes incl. the model's);
# 2. the pass alone at the model's shape (N 512, L 2,114, C 128), bf16, across dilations:
#    examples-first / rows-first (today's kernel, both orders) against k = 2, 4, 8;
# 3. the whole model's bf16 inference at batch 512 with k = 0 (default) and k = 4, one process each.
# If a k wins at every dilation and in the model, make it the default (conv_norm_triton._STATS).
#
#   bash benchmarks/gpu_round_r21.sh [OUTDIR]
source "$(dirname "$0")/_gpu_round_prelude.sh"
unset STRANDWISE_STATS_LOOP STRANDWISE_STATS_ROWS_FIRST STRANDWISE_GLUON_INFER STRANDWISE_GLUON_PACKED_GELU
timeout 100 python -m pytest -q -m gpu tests/models/test_cherimoya_gpu.py 2>&1 | tee "$OUTDIR/tests_model.log" | tail -2
timeout 50 python benchmarks/probe_gluon_fp32_model.py --calls 5 --dtypes bf16 2>&1 | tail -13
timeout 100 python -m pytest -q -m gpu tests/kernels/test_conv_norm_stats.py -k loop 2>&1 \
    | tee "$OUTDIR/tests_stats_loop.log" | tail -2
timeout 120 python benchmarks/probe_stats_grid.py --shapes "512,2114,128" --dtypes bf16 \
    --dilations 1,4,16,64,256 --loops 2,4,8 --out "$OUTDIR/stats_loop_probe.json" 2>&1 | tail -10
for k in 0 4; do
  STRANDWISE_STATS_LOOP=$k timeout 100 python benchmarks/bench_cherimoya_model.py --modes eager --dtypes bf16 \
      --infer-only --no-plain --no-graph --out "$OUTDIR/cherimoya_model_infer_statsloop$k.json" 2>&1 \
      | tail -3 | sed "s/^/[loop=$k] /"
done
