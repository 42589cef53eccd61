"""The conv-norm forward statistics (``conv_norm_triton.conv_norm_stats``) in both grid orders
(row tile or example varying fastest), against fp64 statistics of the conv output: under
``TRITON_INTERPRET=1`` (CPU) for bf16 / fp16 / fp32, C below, not a multiple of or above the
channel tile, ragged row tiles, sequences shorter than a tile, dilations past the sequence and data
with a large offset; on the GPU (``gpu`` marker) at the benchmark and model shapes. Also the rule
that picks the order by dilation and its environment override."""

import subprocess
import sys

import pytest
import torch

from interpreter_run import run_under_interpreter

SCRIPT = r'''
import torch
from strandwise.kernels import conv_norm_triton as cnt
from strandwise.kernels.conv_norm import _dilated_conv

cnt.set_autotune(False)
gen = torch.Generator().manual_seed(0)
SAVED = cnt._STATS["rows_first"]


def want(x, w, d, eps=1e-3):
    y = _dilated_conv(x.double(), w.double(), d)
    mean = y.mean(dim=(1, 2))
    var = (y - mean[:, None, None]).pow(2).mean(dim=(1, 2))
    return mean, torch.rsqrt(var + eps)


def check(x, w, d, tag, rel=2e-5):
    wm, wr = want(x, w, d)
    scale = wr.reciprocal()  # the data's spread: errors are relative to it
    got = []
    for rows_first in (True, False):
        cnt._STATS["rows_first"] = rows_first
        try:
            m, r = cnt.conv_norm_stats(x, w, d, 1e-3)
        finally:
            cnt._STATS["rows_first"] = SAVED
        em = ((m.double() - wm).abs() / scale).max().item()
        er = ((r.double() - wr).abs() / wr).max().item()
        assert em < rel and er < rel, (tag, rows_first, em, er)
        got.append((m, r))
    # the order changes which program computes a partial, not the partial or the sum's order
    assert torch.equal(got[0][0], got[1][0]) and torch.equal(got[0][1], got[1][1]), tag


cases = [
    (2, 512, 128, 4, torch.bfloat16), (2, 300, 96, 64, torch.bfloat16), (3, 37, 16, 1, torch.bfloat16),
    (2, 100, 7, 3, torch.bfloat16), (1, 20, 24, 64, torch.bfloat16), (2, 1000, 64, 256, torch.bfloat16),
    (2, 257, 40, 8, torch.float16), (2, 300, 96, 16, torch.float32), (1, 9, 5, 1, torch.float32),
    (2, 70, 300, 2, torch.float32),
]
for N, L, C, d, dt in cases:
    x = torch.randn(N, L, C, generator=gen).to(dt)
    w = torch.randn(3, C, generator=gen)
    check(x, w, d, (N, L, C, d, dt))

# a large common offset: the per-tile centred sums must not cancel
x = (torch.randn(2, 512, 32, generator=gen) * 0.01 + 300.0).to(torch.bfloat16)
w = torch.rand(3, 32, generator=gen) + 0.5
check(x, w, 4, "offset", rel=1e-4)

# the looped variant (STRANDWISE_STATS_LOOP = k): k row tiles a program, folded into one running
# partial by Chan's combination; ragged groups (8 tiles in groups of 3), one-tile sequences, C
# past the channel tile, the large offset
for tiles in (1, 3):
    cnt._STATS["loop"] = tiles
    try:
        for N, L, C, d, dt in cases[:6] + [(2, 70, 300, 2, torch.float32)]:
            x = torch.randn(N, L, C, generator=gen).to(dt)
            w = torch.randn(3, C, generator=gen)
            wm, wr = want(x, w, d)
            m, r = cnt.conv_norm_stats(x, w, d, 1e-3)
            em = ((m.double() - wm).abs() * wr).max().item()
            er = ((r.double() - wr).abs() / wr).max().item()
            assert em < 2e-5 and er < 2e-5, ("loop", tiles, N, L, C, d, dt, em, er)
        x = (torch.randn(2, 512, 32, generator=gen) * 0.01 + 300.0).to(torch.bfloat16)
        w = torch.rand(3, 32, generator=gen) + 0.5
        wm, wr = want(x, w, 4)
        m, r = cnt.conv_norm_stats(x, w, 4, 1e-3)
        assert ((m.double() - wm).abs() * wr).max().item() < 1e-4
        assert ((r.double() - wr).abs() / wr).max().item() < 1e-4, ("loop offset", tiles)
    finally:
        cnt._STATS["loop"] = 0
print("INTERPRETER-OK")
'''


def test_stats_both_grid_orders_under_interpreter():
    run_under_interpreter(SCRIPT, __file__)


def test_grid_order_rule_and_override(monkeypatch):
    pytest.importorskip("triton")
    from strandwise.kernels import conv_norm_triton as cnt

    monkeypatch.setitem(cnt._STATS, "rows_first", None)
    m = cnt.STATS_ROWS_FIRST_MIN_D
    assert not cnt.stats_rows_first(1) and not cnt.stats_rows_first(m - 1)
    assert cnt.stats_rows_first(m) and cnt.stats_rows_first(256)
    monkeypatch.setitem(cnt._STATS, "rows_first", False)
    assert not cnt.stats_rows_first(256)
    monkeypatch.setitem(cnt._STATS, "rows_first", True)
    assert cnt.stats_rows_first(1)


def _stats_setting_at_import(var, value, key):
    """``conv_norm_triton._STATS[key]`` as a fresh process reads it with ``var`` set to ``value``
    (``None``: unset)."""
    pytest.importorskip("triton")
    import os

    env = {k: v for k, v in os.environ.items() if k != var}
    if value is not None:
        env[var] = value
    out = subprocess.run(
        [sys.executable, "-c", f"from strandwise.kernels import conv_norm_triton as c; print(c._STATS[{key!r}])"],
        env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.mark.parametrize("value, want", [("1", "True"), ("0", "False"), (None, "None")])
def test_grid_order_environment(value, want):
    assert _stats_setting_at_import("STRANDWISE_STATS_ROWS_FIRST", value, "rows_first") == want


def test_grid_order_environment_rejects_typos():
    pytest.importorskip("triton")
    import os

    env = dict(os.environ, STRANDWISE_STATS_ROWS_FIRST="yes")
    res = subprocess.run([sys.executable, "-c", "import strandwise.kernels.conv_norm_triton"],
                         env=env, capture_output=True, text=True)
    assert res.returncode != 0 and "STRANDWISE_STATS_ROWS_FIRST must be 0 or 1" in res.stderr


@pytest.mark.parametrize("value, want", [("4", "4"), ("0", "0"), ("", "0"), (None, "0")])
def test_stats_loop_environment(value, want):
    assert _stats_setting_at_import("STRANDWISE_STATS_LOOP", value, "loop") == want


@pytest.mark.parametrize("value", ["yes", "-1", "65", "2.5"])
def test_stats_loop_environment_rejects_bad_values(value):
    pytest.importorskip("triton")
    import os

    env = dict(os.environ, STRANDWISE_STATS_LOOP=value)
    res = subprocess.run([sys.executable, "-c", "import strandwise.kernels.conv_norm_triton"],
                         env=env, capture_output=True, text=True)
    assert res.returncode != 0 and "STRANDWISE_STATS_LOOP must be a whole number" in res.stderr


@pytest.mark.gpu
@pytest.mark.parametrize("tiles", [2, 8])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("shape", [(8, 1024, 128, 4), (4, 2114, 96, 128), (3, 333, 7, 2), (2, 2114, 128, 256)])
def test_stats_loop_gpu(dtype, shape, tiles, monkeypatch):
    from strandwise.kernels import conv_norm_triton as cnt

    monkeypatch.setitem(cnt._STATS, "loop", tiles)
    _check_gpu_stats(shape, dtype)


@pytest.mark.gpu
@pytest.mark.parametrize("rows_first", [True, False])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("shape", [(8, 1024, 128, 4), (4, 2114, 96, 128), (3, 333, 7, 2)])
def test_stats_gpu(dtype, shape, rows_first, monkeypatch):
    from strandwise.kernels import conv_norm_triton as cnt

    monkeypatch.setitem(cnt._STATS, "rows_first", rows_first)
    _check_gpu_stats(shape, dtype)


def _check_gpu_stats(shape, dtype):
    """conv_norm_stats on the GPU, twice (deterministic, also after autotuning), against the
    float64 statistics of the conv output."""
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
    m, r = cnt.conv_norm_stats(x, w, d, 1e-3)
    m2, r2 = cnt.conv_norm_stats(x, w, d, 1e-3)
    assert torch.equal(m, m2) and torch.equal(r, r2)  # deterministic, also after autotuning
    assert ((m.double() - wm).abs() * wr).max() < 2e-5
    assert ((r.double() - wr).abs() / wr).max() < 2e-5
