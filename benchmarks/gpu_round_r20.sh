#!/usr/bin/env bash
# Next device call after Cherimoya round 19 (either GPU kind; at most ~230 s of commands, what a
# lease started late in a session's device budget leaves):
# * on an H200: the summary table's oldest H200 rows with today's kernels — the bf16 block (Gluon
#   pass with the packed GELU), the whole model's bf16 inference;
# * on an H100: whether fp32 input should take the Gluon pass by default — the whole model's fp32
#   inference with it forced (STRANDWISE_GLUON_INFER=1) and automatic (megakernel), one process
#   each (round 19's profile: GPU time 11.0 vs 11.6 ms a call, against round 17's end-to-end 38.4k
#   vs 46.2k seq/s; the fp32 parity of the default Gluon configuration passed in round 19).
#
#   bash benchmarks/gpu_round_r20.sh [OUTDIR]
source "$(dirname "$0")/_gpu_round_prelude.sh"
unset STRANDWISE_GLUON_INFER STRANDWISE_GLUON_PACKED_GELU STRANDWISE_CAPPED_CONFIGS
if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then
  timeout 130 python benchmarks/bench_cheri_block.py --no-compile --dtypes bf16 --out "$OUTDIR/cheri_block_bf16_r20_h200.json" 2>&1 \
      | grep -E "^bf16"
  timeout 100 python benchmarks/bench_cherimoya_model.py --modes eager --dtypes bf16 --infer-only --no-plain \
      --out "$OUTDIR/cherimoya_model_infer_r20_h200.json" 2>&1 | tail -3
  # (the scan's shapes, ~150 s, did not fit: `bash benchmarks/gpu_round_h200_r16.sh` has them)
else
  for mode in forced auto; do
    if [ "$mode" = forced ]; then export STRANDWISE_GLUON_INFER=1; else unset STRANDWISE_GLUON_INFER; fi
    timeout 110 python benchmarks/bench_cherimoya_model.py --modes eager --dtypes fp32 --infer-only --no-plain \
        --out "$OUTDIR/cherimoya_model_infer_fp32_gluon_${mode}_r20.json" 2>&1 | tail -3 | sed "s/^/[$mode] /"
  done
fi
