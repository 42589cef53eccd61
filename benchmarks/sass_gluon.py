"""Offline sm_90 compile of the warp-specialised Gluon MLP pass (no GPU needed): registers,
spills, shared memory, instruction mix and PTX of a variant, before device time is spent.

    python benchmarks/sass_gluon.py [--C 128 --H 256] [--npart 2 --block-h 128 --pipe 1
        --coalesced 1 --packed 1 --res-smem 0 --dtype bf16] [--ptx out.ptx]

Switches the kernel in this tree does not have (``--prefetch``, ``--half-w2``: experiments not on
main) must stay 0. ``--packed``: the GELU on packed pairs (the default for 16-bit input). Pointers
as at a launch with ``--dtype`` input and weights (bf16 or fp16), integers with the divisibility
hint, ``EVEN`` as at the spec shape (N·L a multiple of 64, C = BLOCK_C).
"""

from __future__ import annotations

import argparse
import collections

from sass_cheri import mix
from sass_scan import instructions, opcode, sass_of

from strandwise.io.atomic import atomic_write_text


def compile_ws(C=128, H=256, npart=2, block_h=128, pipe=1, coalesced=1, prefetch=0, half_w2=0, packed=0,
               regs=None, fast=1, dtype="bf16", res_smem=0):
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.experimental.gluon._runtime import GluonASTSource

    from strandwise.kernels import cheri_infer as ci
    from strandwise.kernels import cheri_infer_gluon as cig

    fn = cig.mlp_kernel_gluon_ws
    bc, bh, nh = ci._gluon_geometry(C, H, block_h)  # as the launcher chooses them
    consts = dict(BLOCK_M=64, BLOCK_C=bc, BLOCK_H=bh, NUM_H=nh, FAST_GELU=fast,
                  COALESCED=coalesced, TPW_C=min(32, bc // 8), PIPE=pipe, EVEN=int(C == bc), NPART=npart,
                  REGS=regs or ci.gluon_ws_regs(npart), PREFETCH=prefetch, HALF_W2=half_w2,
                  PACKED=packed, RES_SMEM=res_smem)
    t = "*" + dtype
    ptr_t = {"x_ptr": t, "cw_ptr": "*fp32", "w1t_ptr": t, "w2t_ptr": t,
             "mean_ptr": "*fp32", "rstd_ptr": "*fp32", "out_ptr": t}
    names = {p.name for p in fn.params}
    for k, v in list(consts.items()):  # switches this version of the kernel does not have
        if k not in names:
            if v:
                raise SystemExit(f"this kernel has no {k} (a branch switch)")
            del consts[k]
    sig, attrs, cval = {}, {}, {}
    for i, p in enumerate(fn.params):
        if p.name in consts:
            sig[p.name] = "constexpr"
            cval[(i,)] = consts[p.name]
        elif p.name in ptr_t:
            sig[p.name] = ptr_t[p.name]
            attrs[(i,)] = [["tt.divisibility", 16]]
        else:
            sig[p.name] = "i32"
            attrs[(i,)] = [["tt.divisibility", 16]]
    return triton.compile(GluonASTSource(fn, sig, cval, attrs), target=GPUTarget("cuda", 90, 32),
                          options={"num_warps": 4})


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--C", type=int, default=128)
    ap.add_argument("--H", type=int, default=256)
    for k, v in (("npart", 2), ("block-h", 128), ("pipe", 1), ("coalesced", 1), ("prefetch", 0),
                 ("half-w2", 0), ("packed", 1), ("regs", 0), ("res-smem", 0)):
        ap.add_argument(f"--{k}", type=int, default=v)
    ap.add_argument("--dtype", choices=("bf16", "fp16"), default="bf16")
    ap.add_argument("--ptx", default=None, help="write the PTX here")
    ap.add_argument("--top", type=int, default=0, help="print the N most frequent opcodes")
    a = ap.parse_args(argv)
    ck = compile_ws(a.C, a.H, a.npart, a.block_h, a.pipe, a.coalesced, a.prefetch, a.half_w2, a.packed,
                    a.regs or None, dtype=a.dtype, res_smem=a.res_smem)
    sass, usage = sass_of(ck)
    usage["static_shared"] = usage.pop("shared", 0)  # cuobjdump's figure: the static part only
    print({"shared_bytes": ck.metadata.shared, "warps": ck.metadata.num_warps, **usage, **mix(sass)})
    if a.top:
        ops = collections.Counter(opcode(t) for _, t in instructions(sass))
        print(ops.most_common(a.top))
    if a.ptx:
        atomic_write_text(a.ptx, ck.asm["ptx"])


if __name__ == "__main__":
    main()
