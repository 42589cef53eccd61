"""The forward statistics kernels under ``TRITON_INTERPRET=1`` (CPU), against the fp64 statistics of
the conv output: the multi-tile kernel (``conv_norm_triton._fwd_stats_loop_kernel``) and the
one-tile kernel, each in both grid orders (row tiles or examples varying fastest); bf16 read as int32 channel pairs, fp16 / fp32 / odd C without pairs, C not a
multiple of the channel tile, lengths that leave ragged rows or are shorter than one tile,
dilations beyond the sequence, data with a large offset (the per-slot shift), every autotune
candidate at one shape and the heuristic config elsewhere. The compiled kernel is covered by the
gpu-marked test below (run on the GPU machine)."""

import pytest
import torch

from interpreter_run import run_under_interpreter

SCRIPT = r'''
import torch
from strandwise.kernels import conv_norm_triton as cnt
from strandwise.kernels.conv_norm import _dilated_conv

cnt.set_autotune(False)
gen = torch.Generator().manual_seed(0)


def want(x, w, d, eps=1e-3):
    y = _dilated_conv(x.double(), w.double(), d)
    mean = y.mean(dim=(1, 2))
    var = (y - mean[:, None, None]).pow(2).mean(dim=(1, 2))
    return mean, torch.rsqrt(var + eps)


def check(x, w, d, tag, rel=2e-5):
    """Both kernels, both grid orders, against fp64."""
    wm, wr = want(x, w, d)
    scale = wr.reciprocal()  # the data's spread: errors are relative to it
    for loop in (True, False):
        for rows_first in (True, False):
            cnt.set_stats_loop(loop)
            cnt._STATS["rows_first"] = rows_first
            try:
                m, r = cnt.conv_norm_stats(x, w, d, 1e-3)
            finally:
                cnt.set_stats_loop(False)
                cnt._STATS["rows_first"] = True
            em = ((m.double() - wm).abs() / scale).max().item()
            er = ((r.double() - wr).abs() / wr).max().item()
            assert em < rel and er < rel, (tag, loop, rows_first, em, er)


# (N, L, C, d, dtype): bf16 pairs (C even), odd C (no pairs), C below / not a multiple of the tile,
# ragged rows, L shorter than a tile, dilation past the sequence
cases = [
    (2, 512, 128, 4, torch.bfloat16), (2, 300, 96, 2, torch.bfloat16), (3, 37, 16, 1, torch.bfloat16),
    (2, 100, 7, 3, torch.bfloat16), (1, 20, 24, 64, torch.bfloat16), (2, 1000, 64, 256, torch.bfloat16),
    (2, 257, 40, 8, torch.float16), (2, 300, 96, 16, torch.float32), (1, 9, 5, 1, torch.float32),
]
for N, L, C, d, dt in cases:
    x = torch.randn(N, L, C, generator=gen).to(dt)
    w = torch.randn(3, C, generator=gen)
    check(x, w, d, (N, L, C, d, dt))

# a large common offset: centred sums must not cancel (fp32 E[y²] − E[y]² would lose ~all digits)
x = (torch.randn(2, 512, 32, generator=gen) * 0.01 + 300.0).to(torch.bfloat16)
w = torch.rand(3, 32, generator=gen) + 0.5
check(x, w, 4, "offset", rel=1e-4)

# every autotune candidate at one shape (bf16 pairs, full rows) and at a ragged length
x = torch.randn(2, 512, 64, generator=gen).to(torch.bfloat16)
x2 = torch.randn(2, 333, 64, generator=gen).to(torch.bfloat16)
w = torch.randn(3, 64, generator=gen)
orig = cnt._stats_loop_heuristic
seen = 0
try:
    for xx in (x, x2):
        L = xx.shape[1]
        for cfg in cnt._stats_loop_prune(cnt.stats_loop_configs(), dict(L=L), BLOCK_C=64):
            cnt._stats_loop_heuristic = lambda L_, bc, cfg=cfg: (dict(cfg.kwargs), cfg.num_warps)
            check(xx, w, 3, ("config", L, cfg.kwargs, cfg.num_warps))
            seen += 1
finally:
    cnt._stats_loop_heuristic = orig
assert seen >= 8, seen
print("INTERPRETER-OK")
'''


def test_stats_loop_under_interpreter():
    run_under_interpreter(SCRIPT, __file__)


def test_stats_loop_configs_divide_the_largest_chunk():
    # EVEN_L for the autotuned launch is decided once for all candidates: L % 512 == 0 must
    # mean no ragged rows in any of them
    from strandwise.kernels import conv_norm_triton as cnt

    for cfg in cnt.stats_loop_configs():
        rows = cfg.kwargs["BLOCK_L"] * cfg.kwargs["ITERS"]
        assert cnt._LOOP_CHUNKS[-1] % rows == 0


@pytest.mark.gpu
@pytest.mark.parametrize("kernel", ["loop/rows", "loop/examples", "tile/rows", "tile/examples"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("shape", [(8, 1024, 128, 4), (4, 2114, 96, 32), (3, 333, 7, 2)])
def test_stats_kernels_gpu(dtype, shape, kernel):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from strandwise.kernels import conv_norm_triton as cnt
    from strandwise.kernels.conv_norm import _dilated_conv

    N, L, C, d = shape
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(N, L, C, generator=gen).to(dtype).cuda()
    w = torch.randn(3, C, generator=gen).cuda()
    y = _dilated_conv(x.double(), w.double(), d)
    wm = y.mean(dim=(1, 2))
    wr = torch.rsqrt((y - wm[:, None, None]).pow(2).mean(dim=(1, 2)) + 1e-3)
    prev = cnt.stats_loop_enabled(), cnt._STATS["rows_first"]
    cnt.set_stats_loop(kernel.startswith("loop"))
    cnt._STATS["rows_first"] = kernel.endswith("rows")
    try:
        m, r = cnt.conv_norm_stats(x, w, d, 1e-3)
        m2, r2 = cnt.conv_norm_stats(x, w, d, 1e-3)
    finally:
        cnt.set_stats_loop(prev[0])
        cnt._STATS["rows_first"] = prev[1]
    assert torch.equal(m, m2) and torch.equal(r, r2)  # deterministic, also after autotuning
    assert ((m.double() - wm).abs() * wr).max() < 2e-5
    assert ((r.double() - wr).abs() / wr).max() < 2e-5
