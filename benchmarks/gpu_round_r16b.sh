#!/usr/bin/env bash
# Second device call of round 16 (timeouts sum to 300 s): the statistics pass's grid order.
# 1. GPU parity of the one-tile statistics kernel with the row tile varying fastest (the new
#    default), all dtypes and shapes of test_conv_norm_stats_loop.py;
# 2. A/B of the grid order (statistics alone and the whole inference call), bf16 and fp32, at the
#    benchmark shape and the default model's d=256 block;
# 3. A/B of the multi-tile kernel against the one-tile kernel, both in the new order, bf16;
# 4. the inference megakernel's GPU tests (they run through the statistics pass).
#
#   bash benchmarks/gpu_round_r16b.sh [OUTDIR]
source "$(dirname "$0")/_gpu_round_prelude.sh"
unset STRANDWISE_CAPPED_CONFIGS STRANDWISE_STATS_LOOP STRANDWISE_STATS_ROWS_FIRST
timeout 70 python -m pytest -q -m gpu tests/kernels/test_conv_norm_stats_loop.py -k "tile and rows" 2>&1 | tee "$OUTDIR/tests_stats.log" | tail -3
timeout 80 python benchmarks/bench_cheri_ab.py --switch stats_rows_first --rounds 3 --out "$OUTDIR/cheri_stats_rows_first.json" 2>&1 | tail -17
timeout 50 python benchmarks/bench_cheri_ab.py --switch stats_loop --rounds 3 --dtypes bf16 --out "$OUTDIR/cheri_stats_loop_rows.json" 2>&1 | tail -9
timeout 100 python -m pytest -q -m gpu tests/kernels/test_cheri_infer.py 2>&1 | tee "$OUTDIR/tests_infer.log" | tail -3
