"""The Cheri MLP kernels' register budget, checked by an offline sm_90 compile (Triton's bundled
ptxas; no GPU needed): the register-capped autotune candidates
(:func:`strandwise.kernels.cheri_infer_triton.capped_configs`) compile without spilling. They
only fit because the tile's addresses and masks after the hidden loop are computed afresh
(``_tile_offsets``) instead of held through the loop; holding them made the same configs spill
(64-row, 8-warp inference tile at 128 registers: 64 bytes of stack; 4-warp at 168: 160)."""

import os
import sys

import pytest

pytest.importorskip("triton")

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))

INTS = dict(NL=512 * 1024, L=1024, C=128, H=256, D=4)
FWD_HALF = ("x_ptr", "w1t_ptr", "w2t_ptr", "out_ptr", "xn_ptr", "z_ptr", "h_ptr")
BWD_HALF = ("dout_ptr", "z_ptr", "w1_ptr", "w2s_ptr", "dz_ptr", "dxn_ptr", "xn_ptr")


def _usage(fn, consts, half, num_warps, maxnreg, num_stages=3):
    try:
        from sass_scan import compile_sm90, sass_of

        ck = compile_sm90(fn, consts, half, num_warps=num_warps, ints=INTS, num_stages=num_stages,
                          maxnreg=maxnreg)
        return sass_of(ck)[1]
    except SystemExit as exc:  # cuobjdump missing beside this Triton build
        pytest.skip(str(exc))


def _fwd_capped():
    from strandwise.kernels import cheri_infer_triton as cit

    return [(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_H"], c.num_warps, c.maxnreg, c.num_stages)
            for c in cit.capped_fwd_configs()]


@pytest.mark.parametrize("half_w2", [0, 1])
@pytest.mark.parametrize("even", [0, 1])
@pytest.mark.parametrize("bm,bh,nw,reg,ns", _fwd_capped())
def test_capped_inference_tiles_do_not_spill(bm, bh, nw, reg, ns, even, half_w2):
    """Every capped candidate of the forward kernel's space, as the inference pass (bf16; with
    ``HALF_W2``, the default for bf16 operands, and without, as for fp16)."""
    from strandwise.kernels import cheri_infer_triton as cit

    consts = dict(BLOCK_M=bm, BLOCK_H=bh, BLOCK_C=128, DOT=0, PRECISION="ieee", FAST_GELU=True,
                  RELOAD_RES=1, SAVE=0, EVEN=even, HALF_W2=half_w2)
    u = _usage(cit.mlp_kernel, consts, FWD_HALF, nw, reg, num_stages=ns)
    assert u["reg"] <= reg and u["stack"] == 0, u


def test_capped_backward_tile_does_not_spill():
    from strandwise.kernels import cheri_train_triton as ctt

    consts = dict(BLOCK_M=64, BLOCK_H=64, BLOCK_C=128, FAST_GELU=True, PREFETCH_XN=0, DOT=0,
                  PRECISION="ieee")
    u = _usage(ctt.mlp_bwd_kernel, consts, BWD_HALF, 8, 128)
    assert u["reg"] <= 128 and u["stack"] == 0, u
