#!/usr/bin/env bash
# One device call (timeouts sum to 330 s): register-capped configs (8 warps at 128, 4 at 168) for the
# Cheri MLP kernels, with STRANDWISE_CAPPED_CONFIGS=1. First the sweep of every config the
# autotuner would try for the bf16 inference MLP pass, capped ones included, with and without EVEN
# (no tile masks), each checked against the fp32 reference; then the GPU parity tests of EVEN
# tiles and of the inference megakernel (every pruned config is checked there); then the bf16
# block table, whose JSON names the autotuner's picks.
#
#   bash benchmarks/gpu_round_maxnreg.sh [OUTDIR]
source "$(dirname "$0")/_gpu_round_prelude.sh"
export STRANDWISE_CAPPED_CONFIGS=1  # the capped candidates (the default since round 13)
timeout 110 python benchmarks/sweep_cheri_infer.py --space tuned --even --stages 2,3,4 --dtypes bf16 \
    --out "$OUTDIR/sweep_cheri_infer_capped.json" 2>&1 | tail -30
timeout 90 python -m pytest -q -m gpu tests/kernels/test_cheri_even_tiles.py tests/kernels/test_cheri_infer.py 2>&1 \
    | tee "$OUTDIR/tests_cheri.log" | tail -3
timeout 130 python benchmarks/bench_cheri_block.py --no-compile --dtypes bf16 --out "$OUTDIR/cheri_block.json" 2>&1 \
    | grep -E "strandwise"
python - "$OUTDIR/cheri_block.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(json.dumps(d.get("autotuned_configs"), indent=0)[:3000])
PY
