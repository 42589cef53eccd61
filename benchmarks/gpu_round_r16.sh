#!/usr/bin/env bash
# One device call, either GPU kind (timeouts sum to 545 s), most important first (each step writes
# into OUTDIR as it finishes, so a call cut short keeps what ran):
# 1. the multi-tile statistics kernel's GPU parity tests (new in round 16);
# 2. its A/B against the one-tile kernel: statistics alone and the whole inference call, bf16 and
#    fp32, at the benchmark shape and the default model's d=256 block (decides the default);
# 3. the stem's fp32 split test with its error-analysis bound (not yet run on a GPU);
# 4. HALF_W2 on and off, alternating, bf16 and fp32 input (bit identity checked; round 15);
# 5. the whole-model GPU tests a time limit stopped in the ninth session (ieee excluded: slow);
# 6. the scan's four benchmark shapes with scan round 8's -0.0 change.
#
#   bash benchmarks/gpu_round_r16.sh [OUTDIR]
source "$(dirname "$0")/_gpu_round_prelude.sh"
unset STRANDWISE_CAPPED_CONFIGS STRANDWISE_STATS_LOOP
timeout 60 python -m pytest -q -m gpu tests/kernels/test_conv_norm_stats_loop.py 2>&1 | tee "$OUTDIR/tests_stats_loop.log" | tail -3
timeout 100 python benchmarks/bench_cheri_ab.py --switch stats_loop --rounds 4 --out "$OUTDIR/cheri_stats_loop.json" 2>&1 | tail -17
timeout 45 python -m pytest -q -m gpu tests/kernels/test_stem.py -k "split_matches" 2>&1 | tee "$OUTDIR/tests_stem.log" | tail -3
timeout 60 python benchmarks/bench_cheri_ab.py --switch half_w2 --shapes "512,1024,128,4" --out "$OUTDIR/cheri_half_w2.json" 2>&1 | tail -5
timeout 150 python -m pytest -v -m gpu tests/models/test_cherimoya_gpu.py -k "not small_model and not no_grad_vs_grad and not ieee" \
    2>&1 | tee "$OUTDIR/tests_model.log" | grep -E "PASSED|FAILED|ERROR|passed|failed" | cut -c1-160 | tail -14
timeout 130 python benchmarks/bench_selective_scan.py --skip-reference --out "$OUTDIR/selective_scan_r8.json" 2>&1 | tail -12
