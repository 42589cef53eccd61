#!/usr/bin/env bash
# One device call (timeouts sum to 560 s) for what the ninth session's H100 calls left undone,
# most important first (each step writes into OUTDIR as it finishes, so a call cut short keeps
# what ran):
# 1. the stem's fp32 split test with its new error-analysis bound (not yet run on a GPU);
# 2. the whole-model GPU tests that a time limit stopped (the default model, all paths; dispatch;
#    the stem's dispatch; fp32 product modes, ieee last: its exact-fp32 compile is slow);
# 3. HALF_W2 on and off, alternating, bf16 and fp32 input (bit identity checked; Cherimoya round 15);
# 4. the scan's four benchmark shapes with the -0.0 change (scan round 8; parity passed on an H100).
#
#   bash benchmarks/gpu_round_after_r15.sh [OUTDIR]
source "$(dirname "$0")/_gpu_round_prelude.sh"
unset STRANDWISE_CAPPED_CONFIGS
timeout 60 python -m pytest -q -m gpu tests/kernels/test_stem.py -k "split_matches" 2>&1 | tee "$OUTDIR/tests_stem.log" | tail -3
timeout 200 python -m pytest -v -m gpu tests/models/test_cherimoya_gpu.py -k "not small_model and not no_grad_vs_grad and not ieee" \
    2>&1 | tee "$OUTDIR/tests_model.log" | grep -E "PASSED|FAILED|ERROR|passed|failed" | cut -c1-160 | tail -14
timeout 90 python benchmarks/bench_cheri_half_w2.py --out "$OUTDIR/cheri_half_w2.json" 2>&1 | tail -6
timeout 150 python benchmarks/bench_selective_scan.py --skip-reference --out "$OUTDIR/selective_scan_r8.json" 2>&1 | tail -12
timeout 60 python -m pytest -v -m gpu tests/models/test_cherimoya_gpu.py -k "ieee" 2>&1 | tee "$OUTDIR/tests_model_ieee.log" \
    | grep -E "PASSED|FAILED|ERROR|passed|failed" | cut -c1-160 | tail -3
