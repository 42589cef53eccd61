"""The conv-norm backward's comb main pass under ``TRITON_INTERPRET=1`` (CPU), against the spec
§2.5 formulas: both lane layouts (dilation below / above the tile's row count), dilations that
divide nothing, sequences shorter than one comb, C not a power of two, with and without the
residual, with caller-supplied statistics, batches launched in slices, for the heuristic config and for several autotune candidates. The compiled kernel is
covered by the gpu-marked tests of ``test_conv_norm_triton.py``."""

from interpreter_run import run_under_interpreter

SCRIPT = r'''
import torch
from strandwise.kernels import conv_norm_triton as cnt
from strandwise.kernels.conv_norm import conv_norm_backward_reference, conv_norm_forward_reference

cnt.set_autotune(False)
gen = torch.Generator().manual_seed(0)
cases = [(2, 64, 16, 1), (2, 67, 24, 3), (1, 100, 8, 32), (2, 90, 16, 40), (1, 50, 16, 64),
         (1, 33, 5, 17), (2, 20, 16, 30)]
seen = set()
for N, L, C, d in cases:
    x, g, res = (torch.randn(N, L, C, generator=gen) for _ in range(3))
    w = torch.randn(3, C, generator=gen)
    _, mean, rstd = conv_norm_forward_reference(x, w, d)
    rdx, rdw = conv_norm_backward_reference(g, x, w, mean, rstd, d)
    pruned = cnt._comb_prune(cnt.comb_configs(), dict(L=L, D=d), BLOCK_C=cnt._block_c(C))
    orig = cnt._comb_heuristic
    for cfg in [None] + pruned[:: max(1, len(pruned) // 3)]:
        if cfg is not None:
            cnt._comb_heuristic = lambda L_, D_, bc, cfg=cfg: (dict(cfg.kwargs), cfg.num_warps)
            seen.add((cfg.kwargs["BLOCK_L"], cfg.kwargs["K"]))
        try:
            for r in (None, res):
                dx, dw = cnt.conv_norm_bwd(g, x, w, mean, rstd, d, residual=r)
                want = rdx if r is None else rdx + r
                assert (dx - want).abs().max() < 1e-4, (N, L, C, d, cfg)
                assert (dw - rdw).abs().max() < 1e-3, (N, L, C, d, cfg)
        finally:
            cnt._comb_heuristic = orig
    # caller-supplied S1, S2 (the fused block's MLP backward computes them) skip the stats pass
    sums = cnt._bwd_sums(g, x, w, mean, rstd, d)
    dxs, dws = cnt.conv_norm_bwd(g, x, w, mean, rstd, d, sums=sums)
    dx, dw = cnt.conv_norm_bwd(g, x, w, mean, rstd, d)
    assert torch.equal(dxs, dx) and torch.equal(dws, dw)
    try:
        cnt.conv_norm_bwd(g, x, w, mean, rstd, d, sums=sums[:, :1].double())
        raise AssertionError("bad sums accepted")
    except ValueError as exc:
        assert "sums must be" in str(exc)
    dxt, dwt = cnt.conv_norm_bwd_tile(g, x, w, mean, rstd, d)
    assert (dxt - rdx).abs().max() < 1e-4 and (dwt - rdw).abs().max() < 1e-3
assert len(seen) >= 3, seen
# batches beyond CUDA's grid-axis-1 limit launch in slices of examples (limit lowered to 2 here)
x, g, res = (torch.randn(5, 40, 16, generator=gen) for _ in range(3))
w = torch.randn(3, 16, generator=gen)
_, mean, rstd = conv_norm_forward_reference(x, w, 3)
rdx, rdw = conv_norm_backward_reference(g, x, w, mean, rstd, 3)
cnt._MAX_GRID_Y = 2
dx, dw = cnt.conv_norm_bwd(g, x, w, mean, rstd, 3, residual=res)
assert (dx - (rdx + res)).abs().max() < 1e-4 and (dw - rdw).abs().max() < 1e-3
print("INTERPRETER-OK")
'''


def test_comb_backward_under_interpreter():
    run_under_interpreter(SCRIPT, __file__)
