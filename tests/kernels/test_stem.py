"""Cherimoya stem no-grad kernel (strandwise.kernels.stem) against the PyTorch stem."""

import pytest
import torch

from strandwise.kernels.stem import stem_infer_eligible, stem_inference, stem_reference
from interpreter_run import run_under_interpreter


def onehot(N, L, seed=0, n_frac=0.0):
    g = torch.Generator().manual_seed(seed)
    X = torch.zeros(N, 4, L)
    X.scatter_(1, torch.randint(0, 4, (N, 1, L), generator=g), 1.0)
    if n_frac:  # some N bases (all 0.25): still exact in bf16
        m = torch.rand(N, L, generator=g) < n_frac
        X.permute(0, 2, 1)[m] = 0.25
    return X


def stem_params(F=128, cin=4, kw=21, seed=0, std=0.02):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(F, cin, kw, generator=g) * std
    b = torch.randn(F, generator=g) * 0.1
    return w, b


def test_reference_is_the_models_stem():
    from strandwise.models.cherimoya import Cherimoya

    m = Cherimoya(n_filters=32, n_layers=1, trimming=5)
    X = onehot(2, 60)
    ref = m.igelu(m.iconv(X)).transpose(1, 2)
    torch.testing.assert_close(stem_reference(X, m.iconv.weight, m.iconv.bias), ref, rtol=0, atol=0)


def test_not_eligible_on_cpu_or_with_grad():
    w, b = stem_params()
    X = onehot(1, 30)
    with torch.no_grad():
        assert not stem_infer_eligible(X, w, b)  # CPU tensors
    with pytest.raises(ValueError, match="stem_inference needs"):
        with torch.no_grad():
            stem_inference(X, w, b)


def test_shape_rules():
    from strandwise.kernels.stem import _shapes_ok

    w, b = stem_params(64, 4, 21)
    X = onehot(2, 50)
    assert _shapes_ok(X, w, b)
    assert not _shapes_ok(X, w[:, :, :20], b)  # even kernel width
    assert not _shapes_ok(X, w[:8], b[:8])  # fewer than 16 filters
    assert not _shapes_ok(X[:, :3], w, b)  # channel mismatch
    assert not _shapes_ok(X.double(), w, b)  # dtype mismatch without autocast
    assert not _shapes_ok(X, w, None)
    assert not _shapes_ok(torch.zeros(65536, 4, 1), w, b)  # beyond the launch grid's limit


def test_stacked_weights_cached_and_invalidated():
    # the stem's stacked weights live in the derived-weight cache shared with the megakernel
    from strandwise.kernels.cheri_infer import _CACHE, clear_derived_weight_cache
    from strandwise.kernels.stem import _stacked_weights

    w, _ = stem_params(32, 4, 21)
    wh, wl = _stacked_weights(w, 32, 4, torch.bfloat16, True)
    assert wh.shape == (128, 32) and torch.equal(wh[21:32], torch.zeros(11, 32, dtype=torch.bfloat16))
    # rows c·32 + t hold W[:, c, t]; the two bf16 terms together carry it to ~2^-17 relative
    torch.testing.assert_close(wh[32:53].float() + wl[32:53].float(), w[:, 1, :].t(),
                               rtol=2e-5, atol=1e-9)
    assert _stacked_weights(w, 32, 4, torch.bfloat16, True)[0] is wh  # cached
    with torch.no_grad():
        w.mul_(2.0)  # in place: the version counter moves
    wh2, _ = _stacked_weights(w, 32, 4, torch.bfloat16, True)
    assert wh2 is not wh and torch.equal(wh2[0], w[:, 0, 0].bfloat16())
    clear_derived_weight_cache()
    assert not _CACHE


_INTERP_SCRIPT = r"""
import sys
sys.path.insert(0, {testdir!r})
import torch
from test_stem import onehot, stem_params
from strandwise.kernels.stem import stem_inference, stem_reference

torch.manual_seed(0)
cases = [  # (N, L, F, cin, kw, x kind)
    (2, 70, 32, 4, 21, "onehot"),     # L not a multiple of the 64-row tile, F < BLOCK_F tile
    (1, 20, 48, 4, 21, "onehot"),     # L shorter than the window; F not a power of two
    (2, 33, 16, 3, 5, "randn"),       # padded input channels (3 -> 4), small window, general x
    (1, 40, 160, 4, 9, "onehot"),     # two filter blocks (128 + 32)
]
for N, L, F, cin, kw, kind in cases:
    w, b = stem_params(F, cin, kw, seed=L)
    X = onehot(N, L, seed=F, n_frac=0.1) if cin == 4 and kind == "onehot" else torch.randn(N, cin, L)
    ref = stem_reference(X.double(), w.double(), b.double())
    with torch.no_grad():
        # fp32 through the two-term split (fp16 terms here: the interpreter has no bf16 math)
        got = stem_inference(X, w, b, split_dtype=torch.float16)
        assert got.shape == (N, L, F) and got.dtype == torch.float32 and got.is_contiguous()
        err = (got.double() - ref).abs().max().item()
        # fp16 split terms lose range below 6e-5 (subnormals): a few 1e-6 here; bf16 on GPUs
        assert err < 2e-5 * max(1.0, ref.abs().max().item()), (N, L, F, cin, kw, err)
        # half-precision compute: one product, output rounded once
        gh = stem_inference(X.half(), w.half(), b.half())
        assert gh.dtype == torch.float16
        errh = (gh.double() - ref).abs().max().item()
        assert errh < 2e-3 * max(1.0, ref.abs().max().item()) + 1e-3, (N, L, F, errh)
print("INTERPRETER-OK")
"""


def test_stem_kernel_under_interpreter():
    run_under_interpreter(_INTERP_SCRIPT, __file__)


# ---------------------------------------------------------------------------------------------
# GPU
# ---------------------------------------------------------------------------------------------

gpu = pytest.mark.gpu


def _cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    pytest.importorskip("triton")


@gpu
@pytest.mark.parametrize("N,L,F,cin,kw", [(3, 2114, 128, 4, 21), (2, 1000, 96, 4, 21), (1, 17, 64, 4, 21),
                                          (2, 300, 512, 4, 15), (2, 257, 40, 3, 7)])
def test_fp32_split_matches_float64(N, L, F, cin, kw):
    _cuda()
    w, b = stem_params(F, cin, kw, seed=N + L)
    g = torch.Generator().manual_seed(N + L)
    X = onehot(N, L, seed=1, n_frac=0.05) if cin == 4 else torch.randn(N, cin, L, generator=g)
    ref = stem_reference(X.double(), w.double(), b.double())
    with torch.no_grad():
        got = stem_inference(X.cuda(), w.cuda(), b.cuda()).cpu()
    assert got.dtype == torch.float32
    # two-term bf16 split: x and w each carried to 2^-18 relative, and the dropped lo·lo product
    # is below 2^-18·|x||w|, so each output is within ~4·2^-18·Σ|x||w| of the exact value (GELU's
    # slope is at most 1.13); bound 2^-15·Σ|x||w| + 2^-22. With general x (cin=3) the error is
    # ~2e-6 absolute, so a fixed 2e-6 bound failed at random (H100, 2026-12-07); one bf16 product
    # without the split is ~40-65x this bound (CPU emulation)
    absconv = torch.nn.functional.conv1d(X.abs().double(), w.abs().double(), padding=kw // 2)
    tol = 2.0**-15 * absconv.transpose(1, 2) + 2.0**-22
    err = (got.double() - ref).abs()
    assert (err <= tol).all(), (err / tol).max().item()


@gpu
@pytest.mark.parametrize("dt", [torch.bfloat16, torch.float16])
def test_half_model_and_autocast(dt):
    _cuda()
    w, b = stem_params(128, 4, 21, seed=3)
    X = onehot(2, 2114, seed=2).cuda()
    ref = stem_reference(X.double().cpu(), w.double(), b.double())
    tol = {torch.bfloat16: 2.0**-7 * 2, torch.float16: 2.0**-10 * 3}[dt]
    with torch.no_grad():
        got = stem_inference(X.to(dt), w.cuda().to(dt), b.cuda().to(dt)).cpu()  # half model
        with torch.autocast("cuda", dtype=dt):
            got_ac = stem_inference(X, w.cuda(), b.cuda()).cpu()  # fp32 model under autocast
    for g in (got, got_ac):
        assert g.dtype == dt
        err = ((g.double() - ref).abs() / (ref.abs() + 0.05)).max().item()
        assert err < tol, err


@gpu
def test_first_call_autotuned_correct_and_weight_cache():
    _cuda()
    from strandwise.kernels import conv_norm_triton

    prev = conv_norm_triton.autotune_enabled()
    conv_norm_triton.set_autotune(True)
    try:
        w, b = stem_params(128, 4, 21, seed=9)
        w, b = w.cuda(), b.cuda()
        X = onehot(4, 1537, seed=4).cuda()
        with torch.no_grad():
            first = stem_inference(X, w, b)  # the tuning call itself must be right
            ref = stem_reference(X.double(), w.double(), b.double()).float()
            torch.testing.assert_close(first, ref, rtol=2e-5, atol=2e-6)
            w.mul_(2.0)  # in place: the stacked-weight cache must notice
            again = stem_inference(X, w, b)
            ref2 = stem_reference(X.double(), w.double(), b.double()).float()
            torch.testing.assert_close(again, ref2, rtol=2e-5, atol=2e-6)
    finally:
        conv_norm_triton.set_autotune(prev)
