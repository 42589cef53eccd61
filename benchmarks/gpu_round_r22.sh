#!/usr/bin/env bash
# Device call (either GPU kind; timeouts sum to 520 s): whole-model inference in example chunks
# (STRANDWISE_GPU_INFER_CHUNK, experimental, default 0 = the whole batch). The idea: every
# operation is per example, and a chunk of 32 × 2,114 × 128 bf16 activations (17 MB in, 17 MB out
# of a block) can stay in the H100's 50 MB L2 from a block's statistics pass to its MLP pass and
# on to the next block, where batch 512's 277 MB go through DRAM twice a block.
# 1. GPU parity: chunked (3 examples, ragged) vs whole batch, fp32 and bf16;
# 2. bf16 inference at batch 512 with chunks of 0 (whole), 64, 32, 16 examples, one process each;
#    fp32 with 0 and 32.
# If a chunk size wins clearly, make it the default (cherimoya.GPU_INFER_CHUNK) and re-run the
# summary rows.
#
#   bash benchmarks/gpu_round_r22.sh [OUTDIR]
source "$(dirname "$0")/_gpu_round_prelude.sh"
unset STRANDWISE_GPU_INFER_CHUNK
timeout 40 python -m pytest -q -m gpu tests/models/test_cherimoya_gpu.py -k chunked 2>&1 \
    | tee "$OUTDIR/tests_chunked.log" | tail -2
for spec in bf16:0 bf16:64 bf16:32 bf16:16 fp32:0 fp32:32; do
  dt=${spec%%:*}; n=${spec##*:}
  STRANDWISE_GPU_INFER_CHUNK=$n timeout 80 python benchmarks/bench_cherimoya_model.py --modes eager --dtypes "$dt" \
      --infer-only --no-plain --no-graph --out "$OUTDIR/cherimoya_model_infer_${dt}_chunk$n.json" 2>&1 \
      | tail -1 | sed "s/^/[$dt chunk=$n] /"
done
