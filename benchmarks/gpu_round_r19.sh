#!/usr/bin/env bash
# Cherimoya round 19, one device call (either GPU kind; timeouts sum to 570 s): the GELU on packed
# half-precision pairs in the Gluon MLP pass (bf16x2 for bf16 input, f16x2 for fp16; the default
# for 16-bit input since this round).
# 1. GPU parity: the default Gluon configuration (bf16, fp16, fp32 input) against the Triton
#    megakernel and float64, the packed switch on and off at four shapes, the small whole model
#    GPU vs CPU;
# 2. the block's inference call, packed (g1) vs the fp32 GELU (g0), at the spec shape (L 1,024,
#    d 4) and at the model's length with a wide dilation (L 2,114, d 256);
# 3. the whole model's bf16 inference at batch 512, packed (default) then with
#    STRANDWISE_GLUON_PACKED_GELU=0, one process each.
#
#   bash benchmarks/gpu_round_r19.sh [OUTDIR]
source "$(dirname "$0")/_gpu_round_prelude.sh"
unset STRANDWISE_GLUON_PACKED_GELU STRANDWISE_GLUON_INFER
timeout 170 python -m pytest -q -m gpu tests/kernels/test_cheri_infer_gluon.py \
    -k "gluon_matches_triton or packed_gelu_switch" 2>&1 | tee "$OUTDIR/tests_gluon_packed.log" | tail -4
timeout 80 python -m pytest -q -m gpu tests/models/test_cherimoya_gpu.py -k small_model 2>&1 \
    | tee "$OUTDIR/tests_model_small.log" | tail -2
for shape in "1024 4" "2114 256"; do
  set -- $shape
  timeout 60 python benchmarks/bench_cheri_infer_gluon.py --L "$1" --d "$2" --warps ws2h128p1g0c,ws2h128p1g1c \
      --out "$OUTDIR/cheri_infer_gluon_r19_L$1_d$2.json" 2>&1 | tail -6
done
for packed in 1 0; do
  STRANDWISE_GLUON_PACKED_GELU=$packed timeout 100 python benchmarks/bench_cherimoya_model.py --modes eager \
      --dtypes bf16 --infer-only --no-plain --out "$OUTDIR/cherimoya_model_infer_packed$packed.json" 2>&1 \
      | tail -4 | sed "s/^/[packed=$packed] /"
done
