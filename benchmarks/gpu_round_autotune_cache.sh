#!/usr/bin/env bash
# One device call (timeouts sum to 580 s): the opt-in autotune disk cache (STRANDWISE_AUTOTUNE_CACHE)
# — its GPU test, then what it saves in the first epoch of a fit: three fresh processes on one
# empty Triton cache directory: (1) compiles and tunes, writing the picks; (2) finds the compiled
# kernels but tunes again (cache off); (3) finds kernels and picks (cache on). Then the two Gluon
# parity tests the last round's time limit left unrun, and the graphed fit with control tracks.
#
#   bash benchmarks/gpu_round_autotune_cache.sh [OUTDIR]
source "$(dirname "$0")/_gpu_round_prelude.sh"
timeout 120 python -m pytest -q -m gpu tests/kernels/test_autotune_cache.py 2>&1 | tee "$OUTDIR/tests_autotune_cache.log" | tail -3
C=$(mktemp -d)
for i in 1 2 3; do
  c=1; [ "$i" = 2 ] && c=0
  TRITON_CACHE_DIR=$C STRANDWISE_AUTOTUNE_CACHE=$c timeout 100 python benchmarks/bench_fit_step.py --n 1024 --epochs 2 \
      --precisions bf16-mixed --graph 1 --out "$OUTDIR/fit_first_epoch_$i.json" 2>&1 | grep '^{' | tail -1
done
timeout 100 python -m pytest -q -m gpu tests/kernels/test_cheri_infer_gluon.py -k coalesced 2>&1 | tail -2
timeout 60 python -m pytest -q -m gpu tests/train/test_cuda_graph_fit.py -k control_tracks 2>&1 | tail -2
