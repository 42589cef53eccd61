"""Offline sm_90 instruction mix of the selective-scan kernels (no GPU needed).

Compiles one of the scan's Triton kernels for an H100/H200 (``GPUTarget("cuda", 90, 32)``) on
any machine with the ``triton`` wheel installed (it ships ``ptxas`` and ``cuobjdump``), and
prints the SASS of its hottest loop as an opcode histogram, with the kernel's registers, stack
(spills) and shared memory. Useful for deciding whether a kernel change is worth device time:
instruction counts per (state, position) element, MUFU vs FP vs integer work, vector widths of
the global loads and stores.

Integer arguments are compiled as Triton specialises them at run time for the benchmark shapes
(divisible by 16); pass ``--no-int-div16`` to see the unspecialised code (scalar loads: what
an odd length or stride gets).

    python benchmarks/sass_scan.py fwd --tf 4
    python benchmarks/sass_scan.py bwd --tf 2 --maxnreg 168 --sass bwd.sass
    python benchmarks/sass_scan.py fwd --src /tmp/my_edit_of_selective_scan_triton.py

Counts are static: a loop body's conditional blocks (e.g. the forward's state store every
``T / TF`` iterations) are counted in full. "Per element" divides the hottest loop by the
16 × TF (state, position) elements one thread handles per TF-position step: the main loop of the
forward kernels, the adjoint's inner loop of the backward ones.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import tempfile

from strandwise.io.atomic import atomic_write_text

_BF16_FWD = ("u_ptr", "delta_ptr", "z_ptr", "out_ptr")
_BF16_BWD = ("u_ptr", "delta_ptr", "z_ptr", "dout_ptr", "du_ptr", "ddelta_ptr", "dz_ptr", "outz_ptr")


def _kernel_spec(name: str, tf: int, block_d: int, src: str | None = None):
    """(JITFunction, constexprs, names of bf16 pointer args) for the z-gated, softplus, D, bias case
    (Caduceus' call), forward direction."""
    if src:  # a modified copy of selective_scan_triton.py (compare a kernel edit offline)
        import importlib.util

        spec = importlib.util.spec_from_file_location("sst_variant", src)
        sst = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sst)
    else:
        from strandwise.kernels import selective_scan_triton as sst

    common = dict(HAS_DBIAS=True, SOFTPLUS=True, REVERSE=False, BLOCK_D=block_d, NP=16, T=32, TF=tf)
    if name == "fwd":
        return sst._fwd_kernel, dict(common, HAS_D=True, HAS_Z=True, HAS_H0=False,
                                     STORE_LAST=False, STORE_STATES=True), _BF16_FWD
    if name == "fwd_summary":
        return sst._fwd_summary_kernel, common, _BF16_FWD
    if name in ("bwd", "bwd_summary"):
        return sst._bwd_kernel, dict(common, HAS_D=True, HAS_Z=True, HAS_DLAST=False,
                                     SUMMARY=name == "bwd_summary", LANE_RS=True,
                                     STORE_OUT=False, ATOMIC_BC=True), _BF16_BWD
    raise ValueError(f"unknown kernel {name!r}: fwd, fwd_summary, bwd or bwd_summary")


def compile_sm90(jitfn, constexprs, bf16_ptrs, num_warps=1, maxnreg=None, int_div16=True, ints=None,
                 num_stages=1):
    """Compile ``jitfn`` for sm_90 offline. Pointers are 16-byte aligned, bf16 if named in
    ``bf16_ptrs`` else fp32. Integers: with ``ints`` (name → value) as Triton specialises them at
    run time (1 becomes a constant, multiples of 16 carry the divisibility hint); without, all
    carry the hint iff ``int_div16``."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    sig, attrs, consts = {}, {}, {}
    for i, p in enumerate(jitfn.params):
        if p.name in constexprs or (p.is_constexpr and p.has_default):
            # a constexpr not named keeps its default, as a launch that omits it does
            sig[p.name] = "constexpr"
            consts[(i,)] = constexprs.get(p.name, p.default)
        elif p.name.endswith("_ptr"):
            sig[p.name] = "*bf16" if p.name in bf16_ptrs else "*fp32"
            attrs[(i,)] = [["tt.divisibility", 16]]
        elif ints is not None and ints[p.name] == 1:
            sig[p.name] = "constexpr"
            consts[(i,)] = 1
        else:
            sig[p.name] = "i32"
            if (ints[p.name] % 16 == 0) if ints is not None else int_div16:
                attrs[(i,)] = [["tt.divisibility", 16]]
    opts = {"num_warps": num_warps, "num_stages": num_stages}
    if maxnreg:
        opts["maxnreg"] = maxnreg
    return triton.compile(ASTSource(jitfn, sig, consts, attrs), target=GPUTarget("cuda", 90, 32),
                          options=opts)


def _tool(name: str) -> str:
    import triton

    path = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)
    if not os.path.exists(path):
        raise SystemExit(f"{name} not found beside triton ({path})")
    return path


def sass_of(ck) -> tuple[str, dict]:
    with tempfile.TemporaryDirectory() as d:
        cubin = os.path.join(d, "k.cubin")
        with open(cubin, "wb") as f:
            f.write(ck.asm["cubin"])
        sass = subprocess.run([_tool("cuobjdump"), "-sass", cubin], capture_output=True, text=True,
                              check=True).stdout
        res = subprocess.run([_tool("cuobjdump"), "--dump-resource-usage", cubin],
                             capture_output=True, text=True, check=True).stdout
    usage = {k.lower(): int(v) for k, v in re.findall(r"(REG|STACK|SHARED):(\d+)", res)}
    return sass, usage


def instructions(sass: str) -> list[tuple[int, str]]:
    out = []
    for line in sass.splitlines():
        m = re.match(r"\s*/\*([0-9a-f]+)\*/\s+(.*?)\s*;", line)
        if m:
            out.append((int(m.group(1), 16), m.group(2)))
    return out


def hottest_loop(ins: list[tuple[int, str]]) -> list[str]:
    """The body of the longest backward branch (the kernel's main loop)."""
    best: list[str] = []
    for addr, txt in ins:
        m = re.search(r"BRA (0x[0-9a-f]+)", txt)
        if m and int(m.group(1), 16) < addr:
            top = int(m.group(1), 16)
            body = [t for a, t in ins if top <= a <= addr]
            if len(body) > len(best):
                best = body
    return best


def opcode(txt: str) -> str:
    return re.sub(r"^@!?U?P\w+\s+", "", txt).split()[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kernel", choices=("fwd", "fwd_summary", "bwd", "bwd_summary"))
    ap.add_argument("--tf", type=int, default=None, help="positions per thread (fwd 4, bwd 2)")
    ap.add_argument("--block-d", type=int, default=32)
    ap.add_argument("--num-warps", type=int, default=1)
    ap.add_argument("--maxnreg", type=int, default=None)
    ap.add_argument("--no-int-div16", action="store_true")
    ap.add_argument("--no-states", action="store_true",
                    help="fwd: the inference call's kernel (chunk-start state stores compiled out)")
    ap.add_argument("--src", help="compile the kernels of this copy of selective_scan_triton.py instead")
    ap.add_argument("--sass", help="also write the full SASS here")
    ap.add_argument("--json", help="write the counts as JSON here")
    args = ap.parse_args()
    tf = args.tf or (2 if args.kernel.startswith("bwd") else 4)
    fn, consts, bf16 = _kernel_spec(args.kernel, tf, args.block_d, args.src)
    if args.no_states:
        if args.kernel != "fwd":
            ap.error("--no-states applies to the fwd kernel only")
        consts = dict(consts, STORE_STATES=False)
    ck = compile_sm90(fn, consts, bf16, args.num_warps, args.maxnreg, not args.no_int_div16)
    sass, usage = sass_of(ck)
    if args.sass:
        atomic_write_text(args.sass, sass)
    ins = instructions(sass)
    loop = hottest_loop(ins)
    ops = collections.Counter(opcode(t) for t in loop)
    families = collections.Counter(o.split(".")[0] for o in ops.elements())
    elems = 16 * tf * args.block_d // (32 * args.num_warps)  # (state, position) per thread
    fp = sum(families[k] for k in ("FFMA", "FMUL", "FADD", "FSEL", "FSETP", "FMNMX"))
    res = dict(kernel=args.kernel, tf=tf, block_d=args.block_d, num_warps=args.num_warps,
               maxnreg=args.maxnreg, int_div16=not args.no_int_div16, **usage,
               kernel_instructions=len(ins), loop_instructions=len(loop),
               elements_per_thread_per_iteration=elems,
               per_element=round(len(loop) / elems, 2), fp_per_element=round(fp / elems, 2),
               mufu_per_element=round(families["MUFU"] / elems, 2),
               local_memory_ops=sum(v for k, v in families.items() if k in ("LDL", "STL")),
               loop_families=dict(families.most_common()),
               global_access=dict(sorted((k, v) for k, v in ops.items()
                                         if k.startswith(("LDG", "STG", "RED", "ATOM")))))
    print(json.dumps(res, indent=1))
    if args.json:
        atomic_write_text(args.json, json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
