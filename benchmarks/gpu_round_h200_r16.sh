#!/usr/bin/env bash
# One device call on an H200 (timeouts sum to 580 s): the summary table's H200 rows that are older
# than the kernels (block rows last measured on an H200 in round 3; scan rows in scan round 7):
# 1. the stem's fp32 split test with its error-analysis bound (not yet run on a GPU);
# 2. the bf16 block at the spec shape (inference, training forward, forward+backward, fused rows);
# 3. the whole model's bf16 inference at batch 512 (eager and CUDA graph; the Gluon MLP pass is
#    the bf16 default since round 17), and the block's inference call Triton vs Gluon;
# 4. the scan's four benchmark shapes with scan round 8's -0.0 change and round 9's inference call
#    (the forward is timed under no_grad: no autograd node, no state stores; H100: 0.154 -> 0.053
#    ms at (4, 512, 1,024)), then its inference-vs-training bit-identity test.
#
#   bash benchmarks/gpu_round_h200_r16.sh [OUTDIR]
source "$(dirname "$0")/_gpu_round_prelude.sh"
unset STRANDWISE_CAPPED_CONFIGS
timeout 60 python -m pytest -q -m gpu tests/kernels/test_stem.py -k "split_matches" 2>&1 | tee "$OUTDIR/tests_stem.log" | tail -3
timeout 160 python benchmarks/bench_cheri_block.py --no-compile --dtypes bf16 --out "$OUTDIR/cheri_block_bf16.json" 2>&1 \
    | grep -E "^bf16"
timeout 100 python benchmarks/bench_cherimoya_model.py --modes eager --dtypes bf16 --infer-only --no-plain \
    --out "$OUTDIR/cherimoya_model_infer.json" 2>&1 | tail -6
timeout 70 python benchmarks/bench_cheri_infer_gluon.py --warps ws2h128p1c --out "$OUTDIR/cheri_infer_gluon_h200.json" 2>&1 | tail -4
timeout 150 python benchmarks/bench_selective_scan.py --skip-reference --out "$OUTDIR/selective_scan_r9_h200.json" 2>&1 | tail -12
timeout 40 python -m pytest -q -m gpu tests/kernels/test_selective_scan_triton.py -k inference_call 2>&1 | tail -2
