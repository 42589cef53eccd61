#!/usr/bin/env bash
# One device call on an H100/H200 (its timeouts sum to 590 s, under the 10-minute limit) for the
# Cheri training path: the GPU tests of the fused block and of the conv-norm kernels (comb
# backward, every config), the causal conv's large-batch fallback and the direct launches over
# batch sizes (scan, causal conv), then the figures (model
# step, the block table with the fused rows — on an H200 this decides the 1.6 ms target), in that
# order so that a call cut short by the device budget keeps the first parts. Writes at most 6
# files into OUTDIR (default $OUT, the device tool's output folder).
#
#   bash benchmarks/gpu_round_cheri_train.sh [OUTDIR]
source "$(dirname "$0")/_gpu_round_prelude.sh"
python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
timeout 200 python -m pytest -q -m gpu tests/kernels/test_cheri_train.py 2>&1 | tee "$OUTDIR/tests_cheri_train.log" | tail -6
timeout 110 python -m pytest -q -m gpu tests/kernels/test_conv_norm_triton.py \
    "tests/kernels/test_causal_conv_triton.py::test_batch_beyond_the_grid_limit_takes_the_reference" \
    "tests/kernels/test_causal_conv_triton.py::test_direct_launch_follows_the_batch_size" \
    "tests/kernels/test_selective_scan_triton.py::test_gpu_direct_launch_follows_the_batch_size" \
    2>&1 | tee "$OUTDIR/tests_conv_norm.log" | tail -6
timeout 110 python benchmarks/bench_cherimoya_model.py --modes eager --dtypes bf16,bf16+unfused --train-only \
    --no-plain --iters 10 --out "$OUTDIR/cherimoya_model_train_fused.json" 2>&1 | tail -12
timeout 170 python benchmarks/bench_cheri_block.py --no-compile --out "$OUTDIR/cheri_block.json" 2>&1 | tail -22
