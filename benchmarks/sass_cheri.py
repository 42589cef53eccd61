"""Offline sm_90 compile of the Cheri Block kernels (no GPU needed): registers, spills, shared
memory and the instruction mix of each autotune config, and a PTX identity check.

Compiles the megakernel (:func:`strandwise.kernels.cheri_infer_triton.mlp_kernel`, inference
``SAVE=0`` and training forward ``SAVE=1``) and the training backward
(:func:`strandwise.kernels.cheri_train_triton.mlp_bwd_kernel`) for an H100/H200
(``GPUTarget("cuda", 90, 32)``) with bf16 activations at one shape's integer specialisation, for
every config the autotuner would try there, and prints per config: registers, stack (spill)
bytes, shared memory, and counts of tensor-core (``HGMMA``), MUFU and global/shared memory
instructions. It tells whether a kernel compiles, spills or runs out of shared memory before any
device time is spent; it says nothing about speed.

``--ptx-identical FILE`` compiles the ``SAVE=0`` megakernel and writes its PTX, debug locations
removed, to FILE; run it on two versions of the tree and ``diff`` the files (e.g. to show that a
change to the training variant leaves the inference kernel's code unchanged).

    python benchmarks/sass_cheri.py [--C 128 --H 256 --L 1024 --N 512 --dilation 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys

from sass_scan import compile_sm90, instructions, opcode, sass_of

from strandwise.io.atomic import atomic_write_text


def mix(sass: str) -> dict:
    ops = collections.Counter(opcode(t) for _, t in instructions(sass))
    pick = lambda *pre: sum(n for o, n in ops.items() if o.split(".")[0] in pre)  # noqa: E731
    return {"total": sum(ops.values()), "hgmma": pick("HGMMA"), "mufu": pick("MUFU"),
            "ldg": pick("LDG"), "stg": pick("STG"), "lds": pick("LDS", "LDSM"), "sts": pick("STS"),
            "bar": pick("BAR"), "warpsync": pick("WARPSYNC", "WARPGROUP")}


def ptx_without_locations(ck) -> str:
    return "\n".join(ln for ln in ck.asm["ptx"].splitlines()
                     if not re.match(r"\s*(\.loc|\.file|//|\$L__debug|\.section\s+\.debug)", ln))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--N", type=int, default=512)
    ap.add_argument("--L", type=int, default=1024)
    ap.add_argument("--C", type=int, default=128)
    ap.add_argument("--H", type=int, default=256)
    ap.add_argument("--dilation", type=int, default=4)
    ap.add_argument("--json", default=None)
    ap.add_argument("--ptx-identical", default=None, metavar="FILE")
    args = ap.parse_args(argv)

    from strandwise.kernels import cheri_infer_triton as cit
    from strandwise.kernels._host import next_pow2

    C, H = args.C, args.H
    bc = max(16, next_pow2(C))
    ints = dict(NL=args.N * args.L, L=args.L, C=C, H=H, D=args.dilation)
    fwd_half = ("x_ptr", "w1t_ptr", "w2t_ptr", "out_ptr", "xn_ptr", "z_ptr", "h_ptr")
    bwd_half = ("dout_ptr", "z_ptr", "w1_ptr", "w2s_ptr", "dz_ptr", "dxn_ptr", "xn_ptr")
    named = {"H": H, "C": C}

    if args.ptx_identical:
        cfg = cit.prune(cit.configs(), named, BLOCK_C=bc)[0]
        ck = compile_sm90(cit.mlp_kernel, dict(cfg.kwargs, BLOCK_C=bc, DOT=0, PRECISION="ieee", FAST_GELU=True, SAVE=0, EVEN=0),
                          fwd_half, num_warps=cfg.num_warps, ints=ints, num_stages=cfg.num_stages)
        atomic_write_text(args.ptx_identical, ptx_without_locations(ck) + "\n")
        print(f"PTX of the SAVE=0 megakernel ({cfg}) written to {args.ptx_identical}")
        return

    from strandwise.kernels import cheri_train_triton as ctt

    rows = []
    kernels = [("infer", cit.mlp_kernel, cit.prune(cit.configs(), named, BLOCK_C=bc), dict(DOT=0, PRECISION="ieee", SAVE=0, EVEN=0), fwd_half),
               ("train_fwd", cit.mlp_kernel, cit.prune(cit.configs(), named, BLOCK_C=bc), dict(DOT=0, PRECISION="ieee", SAVE=1, EVEN=0), fwd_half),
               ("train_bwd", ctt.mlp_bwd_kernel, ctt._prune(ctt.bwd_configs(), named, BLOCK_C=bc), dict(DOT=0, PRECISION="ieee"), bwd_half)]
    for name, fn, cfgs, extra, half in kernels:
        for cfg in cfgs:
            consts = dict(cfg.kwargs, BLOCK_C=bc, FAST_GELU=True, **extra)
            try:
                ck = compile_sm90(fn, consts, half, num_warps=cfg.num_warps, ints=ints, num_stages=cfg.num_stages,
                                  maxnreg=cfg.maxnreg)
                sass, usage = sass_of(ck)
                row = dict(kernel=name, config=str(cfg), **usage, **mix(sass))
            except Exception as exc:  # a compile failure is the result
                row = dict(kernel=name, config=str(cfg), error=f"{type(exc).__name__}: {str(exc)[:300]}")
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        atomic_write_text(args.json, json.dumps({"shape": vars(args), "rows": rows}, indent=1) + "\n")
    if any("error" in r for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
