#!/usr/bin/env bash
# Device call (either GPU kind; timeouts sum to 540 s): two experiments that are off by default.
# A. Whole-model inference in example chunks (STRANDWISE_GPU_INFER_CHUNK). Every operation is per
#    example, and a chunk of 32 × 2,114 × 128 bf16 activations (17 MB in, 17 MB out of a block)
#    can stay in the H100's 50 MB L2 from a block's statistics pass to its MLP pass and on to the
#    next block, where batch 512's 277 MB go through DRAM twice a block.
#    1. GPU parity: chunked (3 examples, ragged) vs whole batch, fp32 and bf16;
#    2. bf16 inference at batch 512 with chunks of 0 (whole), 64, 32, 16 examples, one process each.
# B. The Gluon pass's residual kept in shared memory (cheri_infer.GLUON_RES_SMEM): bit-identity
#    tests (bf16, fp16, fp32 × 4 shapes), then the block A/B (suffix s) at the spec shape and at
#    L 2,114 / d 256.
# A chunk size or B that wins clearly becomes the default (then re-run the summary rows).
#
#   bash benchmarks/gpu_round_r22.sh [OUTDIR]
source "$(dirname "$0")/_gpu_round_prelude.sh"
unset STRANDWISE_GPU_INFER_CHUNK
timeout 40 python -m pytest -q -m gpu tests/models/test_cherimoya_gpu.py -k chunked 2>&1 \
    | tee "$OUTDIR/tests_chunked.log" | tail -2
for n in 0 64 32 16; do
  STRANDWISE_GPU_INFER_CHUNK=$n timeout 80 python benchmarks/bench_cherimoya_model.py --modes eager --dtypes bf16 \
      --infer-only --no-plain --no-graph --out "$OUTDIR/cherimoya_model_infer_bf16_chunk$n.json" 2>&1 \
      | tail -1 | sed "s/^/[bf16 chunk=$n] /"
done
timeout 60 python -m pytest -q -m gpu tests/kernels/test_cheri_infer_gluon.py -k residual 2>&1 \
    | tee "$OUTDIR/tests_res_smem.log" | tail -2
for shape in "1024 4" "2114 256"; do
  set -- $shape
  timeout 60 python benchmarks/bench_cheri_infer_gluon.py --L "$1" --d "$2" --warps ws2h128p1g1c,ws2h128p1g1sc \
      --out "$OUTDIR/cheri_infer_gluon_res_smem_L$1_d$2.json" 2>&1 | tail -6
done
