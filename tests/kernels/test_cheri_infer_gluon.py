"""Hopper Gluon MLP pass of the inference megakernel vs the Triton megakernel and the float64 block.

GPU tests (compute capability 9.0); the CPU part checks the switch (automatic by default), that
CPU tensors never take it, and the hidden-chunk geometry."""

import warnings

import pytest
import torch

from strandwise.kernels import cheri_infer as ci

DT = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def test_gluon_path_automatic_by_default_and_never_on_cpu(monkeypatch):
    import os

    if "STRANDWISE_GLUON_INFER" not in os.environ:
        assert ci._GLUON["on"] is None
    for on in (True, None):
        monkeypatch.setitem(ci._GLUON, "on", on)
        assert ci.gluon_mlp_ok(torch.zeros(2, 8, 32), 32, 64) is False  # CPU tensor
        assert ci.gluon_mlp_ok(torch.zeros(2, 8, 32, dtype=torch.bfloat16), 32, 64) is False


def test_automatic_rule_takes_fp32_input_with_bf16_dots(monkeypatch):
    """Since round 20 (H100: fp32 whole-model inference 45,979 -> 48,148 seq/s with the Gluon
    pass) the automatic rule takes it for fp32 input too, as long as the products take bf16
    operands; exact fp32 products ("ieee"/"tf32") stay on the megakernel. The device is faked:
    what is checked is the rule, on the CPU."""
    import types

    pytest.importorskip("triton.experimental.gluon")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))
    monkeypatch.setitem(ci._GLUON, "on", None)
    for dt in (torch.float32, torch.bfloat16, torch.float16):
        x = types.SimpleNamespace(is_cuda=True, dtype=dt, device="cuda:0", shape=(2, 8, 128))
        assert ci.gluon_mlp_ok(x, 128, 256) is True
        assert ci.inference_mlp_pass(x, 256) == "gluon"
    x32 = types.SimpleNamespace(is_cuda=True, dtype=torch.float32, device="cuda:0", shape=(2, 8, 128))
    assert ci.inference_mlp_pass(x32, 256, "ieee") == "triton"
    assert ci.inference_mlp_pass(x32, 256, "tf32") == "triton"
    monkeypatch.setitem(ci._GLUON, "on", False)
    assert ci.inference_mlp_pass(x32, 256) == "triton"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (8, 0))  # A100: no wgmma
    monkeypatch.setitem(ci._GLUON, "on", None)
    assert ci.inference_mlp_pass(x32, 256) == "triton"


def test_set_gluon_inference_takes_true_false_none(monkeypatch):
    monkeypatch.setitem(ci._GLUON, "on", None)
    ci.set_gluon_inference(True)
    assert ci._GLUON["on"] is True
    ci.set_gluon_inference(False)
    assert ci._GLUON["on"] is False
    ci.set_gluon_inference(None)
    assert ci._GLUON["on"] is None


@pytest.mark.parametrize("H,expect", [
    (256, (128, 128, 2)),    # the default model: two chunks of 128
    (192, (128, 64, 3)),     # the description preset (C 96): 64 divides 192, no padding
    (80, (128, 16, 5)),      # only 16 divides 80
    (40, (128, 64, 1)),      # no power of two ≥ 16 divides: one zero-padded chunk
])
def test_gluon_geometry_picks_the_widest_dividing_chunk(H, expect, monkeypatch):
    monkeypatch.setattr(ci, "GLUON_BLOCK_H", 128)
    assert ci._gluon_geometry(128, H) == expect


def test_packed_gelu_only_for_half_precision_input(monkeypatch):
    monkeypatch.setattr(ci, "GLUON_PACKED_GELU", True)
    assert ci.gluon_packed_gelu(torch.bfloat16) == 1 and ci.gluon_packed_gelu(torch.float16) == 1
    assert ci.gluon_packed_gelu(torch.float32) == 0  # fp32 input (bf16 dots) keeps the fp32 GELU
    monkeypatch.setattr(ci, "GLUON_PACKED_GELU", False)
    assert ci.gluon_packed_gelu(torch.bfloat16) == 0


#: spec shape's channels; description preset (three hidden chunks, C below its power of two);
#: dilation beyond L with a ragged last tile; one row
_SHAPES4 = [(2, 1024, 128, 256, 4), (3, 2114, 96, 192, 1), (2, 37, 32, 64, 256), (1, 1, 48, 96, 2)]


def _hopper():
    return torch.cuda.is_available() and torch.cuda.get_device_capability() == (9, 0)


def _weights(C, H, seed=0):
    g = torch.Generator().manual_seed(seed)
    cw = torch.randn(3, C, generator=g)
    w1 = torch.randn(H, C, generator=g) * 0.02 * 4
    w2 = torch.randn(C, H, generator=g) * 0.02 * 4
    return cw, w1, w2


@pytest.mark.gpu
@pytest.mark.parametrize("dt", ["bf16", "fp16", "fp32"])
@pytest.mark.parametrize("N,L,C,H,d", [
    (2, 1024, 128, 256, 4),      # the spec shape's channels
    (3, 2114, 96, 192, 1),       # the description preset, three hidden chunks
    (2, 37, 32, 64, 256),        # dilation beyond L, one chunk, rows not a tile multiple
    (1, 1, 48, 96, 2),           # one row; C not a power of two
    (5, 300, 64, 80, 8),         # H not a multiple of the chunk (zero-padded)
])
def test_gluon_matches_triton_and_float64(N, L, C, H, d, dt):
    """The default Gluon configuration (warp-specialised, two partitions)."""
    _check(N, L, C, H, d, dt)


@pytest.mark.gpu
@pytest.mark.parametrize("coalesced", [False, True], ids=["operand_io", "coalesced_io"])
@pytest.mark.parametrize("dt", ["bf16", "fp32"])
@pytest.mark.parametrize("N,L,C,H,d", _SHAPES4)
def test_plain_gluon_kernel_matches_triton_and_float64(N, L, C, H, d, dt, coalesced, monkeypatch):
    """The 8-warp kernel without partitions (``GLUON_WS = 0``), round 10's layout, with x/out in
    the operand layouts or in 16-byte pieces."""
    monkeypatch.setattr(ci, "GLUON_WS", 0)
    monkeypatch.setattr(ci, "GLUON_BLOCK_H", 64)
    monkeypatch.setattr(ci, "GLUON_COALESCED", coalesced)
    _check(N, L, C, H, d, dt)


@pytest.mark.gpu
@pytest.mark.parametrize("dt", ["bf16", "fp16"])
@pytest.mark.parametrize("N,L,C,H,d", [
    (2, 1024, 128, 256, 4),
    (3, 2114, 96, 192, 1),
    (2, 37, 32, 64, 256),
    (5, 300, 64, 80, 8),
])
def test_packed_gelu_switch(N, L, C, H, d, dt, monkeypatch):
    """16-bit input with the GELU in fp32 (``GLUON_PACKED_GELU`` off) keeps the bounds, the packed
    GELU (the default) reaches the kernel (the outputs differ somewhere) and costs no accuracy
    that shows: its largest and mean errors against float64 within 10 % of the fp32 GELU's (H100,
    round 19: largest equal to 0.2 %, mean 1-3 % larger)."""
    if not _hopper():
        pytest.skip("needs an sm_90 GPU")
    monkeypatch.setattr(ci, "GLUON_PACKED_GELU", False)
    unpacked, ref = _check(N, L, C, H, d, dt, with_ref=True)
    monkeypatch.setattr(ci, "GLUON_PACKED_GELU", True)
    packed = _check(N, L, C, H, d, dt)
    e0, e1 = (unpacked.double().cpu() - ref).abs(), (packed.double().cpu() - ref).abs()
    assert e1.max().item() <= 1.1 * e0.max().item(), (e1.max().item(), e0.max().item())
    assert e1.mean().item() <= 1.1 * e0.mean().item(), (e1.mean().item(), e0.mean().item())
    assert bool((packed != unpacked).any())


@pytest.mark.gpu
@pytest.mark.parametrize("dt", ["bf16", "fp16", "fp32"])
@pytest.mark.parametrize("N,L,C,H,d", _SHAPES4)
def test_residual_in_shared_memory_is_bit_identical(N, L, C, H, d, dt, monkeypatch):
    """``GLUON_RES_SMEM`` (experimental): the residual read back from the partition's shared tile
    instead of global memory — the same values, so the same output bit for bit; also within the
    usual bounds."""
    if not _hopper():
        pytest.skip("needs an sm_90 GPU")
    monkeypatch.setattr(ci, "GLUON_COALESCED", True)
    monkeypatch.setattr(ci, "GLUON_RES_SMEM", False)
    off = _check(N, L, C, H, d, dt)
    monkeypatch.setattr(ci, "GLUON_RES_SMEM", True)
    bc, bh, nh = ci._gluon_geometry(C, H)
    assert ci._gluon_res_smem(ci.GLUON_WS, bc, ci._gluon_weight_bytes(bc, bh, nh)) == 1
    on = _check(N, L, C, H, d, dt)
    assert torch.equal(on, off)


def _check(N, L, C, H, d, dt, with_ref=False):
    if not _hopper():
        pytest.skip("needs an sm_90 GPU")
    cw, w1, w2 = _weights(C, H)
    x = torch.randn(N, L, C, generator=torch.Generator().manual_seed(1))
    xd = x.cuda().to(DT[dt])
    args = (cw.cuda(), w1.cuda(), w2.cuda(), d, 0.15)
    saved = ci._GLUON["on"]
    with torch.no_grad():
        try:
            ci.set_gluon_inference(False)
            tri = ci.cheri_block_inference(xd, *args)
            ci.set_gluon_inference(True)
            assert ci.gluon_mlp_ok(xd, C, H)
            with warnings.catch_warnings():
                # a Gluon failure would fall back to the Triton kernel with a warning: fail instead
                warnings.filterwarnings("error", "strandwise: the Gluon", RuntimeWarning)
                glu = ci.cheri_block_inference(xd, *args)
            assert ci._GLUON["on"] is True
        finally:
            ci.set_gluon_inference(saved)
    ref = ci.cheri_block_reference(xd.double().cpu(), cw.double(), w1.double(), w2.double(), d, 0.15)
    assert glu.dtype == xd.dtype and glu.shape == xd.shape
    # half-precision operands (both kernels): same bound as the Triton kernel's own tests
    ulp = {"fp32": 0.0, "bf16": 2.0**-7, "fp16": 2.0**-10}[dt]
    err = (glu.double().cpu() - ref).abs()
    assert bool((err <= 1e-2 + ulp * ref.abs()).all()), err.max().item()
    # against the Triton kernel: the same operands and products, other summation order
    diff = (glu.float() - tri.float()).abs()
    assert bool((diff <= 2e-3 + 2 * ulp * tri.float().abs()).all()), diff.max().item()
    return (glu, ref) if with_ref else glu


@pytest.mark.gpu
@pytest.mark.parametrize("npart,pipe,bh", [(3, 0, 32), (3, 1, 32), (2, 1, 64), (2, 0, 64)])
@pytest.mark.parametrize("dt", ["bf16", "fp32"])
@pytest.mark.parametrize("N,L,C,H,d", [
    (2, 1024, 128, 256, 4),      # full tiles: the unmasked (EVEN) variant
    (3, 2114, 96, 192, 1),       # C below its power of two: masked
    (2, 37, 32, 64, 256),        # ragged last tile, dilation beyond L
    (1, 1, 48, 96, 2),           # one row
])
def test_gluon_warp_specialised_matches_triton_and_float64(N, L, C, H, d, dt, npart, pipe, bh, monkeypatch):
    monkeypatch.setattr(ci, "GLUON_WS", npart)
    monkeypatch.setattr(ci, "GLUON_PIPE", pipe)
    monkeypatch.setattr(ci, "GLUON_BLOCK_H", bh)
    monkeypatch.setattr(ci, "GLUON_WS_REGS", 168 if npart == 3 else 240)
    monkeypatch.setattr(ci, "GLUON_COALESCED", False)
    _check(N, L, C, H, d, dt)


def test_gluon_failure_falls_back_to_triton_once(monkeypatch):
    """A Gluon compile/launch failure switches the pass off for the process with one warning, and
    the call returns the Triton megakernel's result. CPU tensors with the kernels faked: what is
    checked is the dispatch in ``_infer_impl``."""
    import types

    gluon_calls, triton_calls = [], []

    def failing_launch(*a, **k):
        gluon_calls.append(1)
        raise RuntimeError("out of resource: shared memory")

    def fake_triton(args, *a, **k):
        triton_calls.append(1)
        args[6].fill_(7.0)  # out

    stats = types.SimpleNamespace(conv_norm_stats=lambda x, cw, d, eps: (torch.zeros(x.shape[0]),) * 2)
    monkeypatch.setattr(ci, "_kernels", lambda: types.SimpleNamespace(cnt=stats))
    monkeypatch.setitem(ci._GLUON, "on", None)
    monkeypatch.setattr(ci, "gluon_mlp_ok", lambda x, C, H: ci._GLUON["on"] is not False)
    monkeypatch.setattr(ci, "launch_gluon_kernel", failing_launch)
    monkeypatch.setattr(ci, "launch_block_kernel", fake_triton)
    x = torch.randn(2, 8, 32, dtype=torch.bfloat16)
    cw, w1, w2 = torch.randn(3, 32), torch.randn(64, 32), torch.randn(32, 64)
    with pytest.warns(RuntimeWarning, match="Gluon inference kernel failed"):
        out = ci._infer_impl(x, cw, w1, w2, 2, 0.15, 1e-5, "bf16")
    assert bool((out == 7).all()) and ci._GLUON["on"] is False
    out = ci._infer_impl(x, cw, w1, w2, 2, 0.15, 1e-5, "bf16")  # no second attempt, no warning
    assert gluon_calls == [1] and triton_calls == [1, 1]


def test_small_channel_counts_stay_on_triton(monkeypatch):
    monkeypatch.setitem(ci._GLUON, "on", True)
    assert ci.gluon_mlp_ok(torch.zeros(2, 8, 16), 16, 32) is False


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_default_gluon_pass_compiles_offline_for_sm90(dtype):
    """The default warp-specialised configuration (with the GELU on packed pairs of the input's
    type) compiles for sm_90 without a GPU (Triton's bundled ptxas), within the SM's 232,448 bytes
    of shared memory, and spills no more than when it was timed (216 bytes of stack with the
    packed GELU, 128 without: Cherimoya rounds 17 and 18): a change to the kernel source that no
    longer compiles, or that spills more, shows up in CPU CI before any device time is spent."""
    pytest.importorskip("triton.experimental.gluon")
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
    try:
        from sass_gluon import compile_ws
        from sass_scan import sass_of

        packed = ci.gluon_packed_gelu(DT[dtype])
        ck = compile_ws(C=128, H=256, npart=ci.GLUON_WS, block_h=ci.GLUON_BLOCK_H, pipe=ci.GLUON_PIPE,
                        coalesced=int(ci.GLUON_COALESCED), packed=packed, dtype=dtype)
        sass, usage = sass_of(ck)
    except SystemExit as exc:  # cuobjdump missing beside this Triton build
        pytest.skip(str(exc))
    assert ck.metadata.num_warps == 4 * ci.GLUON_WS  # partition 0 runs in the default warps
    assert ck.metadata.shared <= 232_448, ck.metadata.shared
    assert usage["stack"] <= (216 if packed else 128), usage
    if packed:  # the packed tanh of the input's type, not the fp32 one
        assert ("MUFU.TANH.BF16" if dtype == "bf16" else "MUFU.TANH.F16") in sass


def test_residual_in_shared_memory_compiles_offline_for_sm90():
    """The experimental ``GLUON_RES_SMEM`` variant at C = 128 fits the SM's shared memory (the
    launcher's rule agrees) and spills no more than when it was written (224 bytes of stack)."""
    pytest.importorskip("triton.experimental.gluon")
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
    try:
        from sass_gluon import compile_ws
        from sass_scan import sass_of

        ck = compile_ws(C=128, H=256, npart=2, block_h=128, pipe=1, coalesced=1, packed=1, res_smem=1)
        usage = sass_of(ck)[1]
    except SystemExit as exc:
        pytest.skip(str(exc))
    assert ck.metadata.shared <= 232_448, ck.metadata.shared
    assert usage["stack"] <= 224, usage


def test_residual_in_shared_memory_rule(monkeypatch):
    """Off by default; when switched on, only for the warp-specialised kernel with coalesced I/O
    and where the extra tiles fit (C = 128 at expansion 2 does, as compiled above)."""
    assert ci.GLUON_RES_SMEM is False
    monkeypatch.setattr(ci, "GLUON_RES_SMEM", True)
    monkeypatch.setattr(ci, "GLUON_COALESCED", True)
    w128 = 2 * 128 * 256 * 2  # W1ᵀ and (s·W2)ᵀ at C 128, H 256, 16-bit
    assert ci._gluon_res_smem(2, 128, w128) == 1
    assert ci._gluon_res_smem(3, 128, w128) == 0  # three partitions' tiles do not fit
    assert ci._gluon_res_smem(0, 128, w128) == 0  # the plain kernel has no partitions
    monkeypatch.setattr(ci, "GLUON_COALESCED", False)
    assert ci._gluon_res_smem(2, 128, w128) == 0
