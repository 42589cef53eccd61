"""Inference megakernel: Triton MLP pass vs the Hopper Gluon one, same stats prepass, one GPU.

    python benchmarks/bench_cheri_infer_gluon.py [--N 512 --L 1024 --C 128 --d 4] [--out x.json]

Times ``cheri_block_inference`` (whole call: stats prepass + MLP pass) with each backend, bf16 and
fp32 input (bf16 operands), ``triton.testing.do_bench`` medians, after a warm-up call (autotuning).
"""

import argparse
import json
import re

import torch
import triton

from strandwise.io.atomic import atomic_write_text
from strandwise.kernels import cheri_infer as ci


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--N", type=int, default=512)
    ap.add_argument("--L", type=int, default=1024)
    ap.add_argument("--C", type=int, default=128)
    ap.add_argument("--expansion", type=int, default=2)
    ap.add_argument("--d", type=int, default=4)
    ap.add_argument("--warps", default="8", help="Gluon variants, comma-separated: WARPS[hBLOCK_H][pPIPE][gG][c] "
                    "for the plain kernel, wsNPART[hBLOCK_H][pPIPE][rREGS][gG][c] for the warp-specialised one "
                    "(c = coalesced x/out, p0 = one hidden chunk at a time, g0/g1 = GELU in fp32 / on packed "
                    "half-precision pairs, else the default, s = the residual kept in shared memory; "
                    "e.g. 8,8h128,8c,ws3p0,ws2r240,ws2h128p1g0c,ws2h128p1g1sc)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    C, H = a.C, a.expansion * a.C
    g = torch.Generator().manual_seed(0)
    cw = torch.randn(3, C, generator=g).cuda()
    w1 = (torch.randn(H, C, generator=g) * 0.02).cuda()
    w2 = (torch.randn(C, H, generator=g) * 0.02).cuda()
    rows = []
    gpu = torch.cuda.get_device_name()
    print(gpu)
    for dt in (torch.bfloat16, torch.float32):
        x = torch.randn(a.N, a.L, C, device="cuda").to(dt)
        with torch.no_grad():
            for backend in ["triton"] + [f"gluon{w}" for w in a.warps.split(",")]:
                ci.set_gluon_inference(backend != "triton")
                saved = {k: getattr(ci, k) for k in ("launch_gluon_kernel", "GLUON_BLOCK_H", "GLUON_COALESCED",
                                                     "GLUON_WS", "GLUON_PIPE", "GLUON_WS_REGS",
                                                     "GLUON_PACKED_GELU", "GLUON_RES_SMEM")}
                if backend != "triton":
                    m = re.fullmatch(r"(ws)?(\d+)(?:h(\d+))?(?:p(\d))?(?:r(\d+))?(?:g(\d))?(s)?(c)?", backend[5:])
                    if m is None:
                        raise SystemExit(f"bad variant {backend[5:]!r}")
                    ws, num, bh, pipe, regs, gp, rs, co = m.groups()
                    ci.GLUON_RES_SMEM = bool(rs)
                    if gp is not None:
                        ci.GLUON_PACKED_GELU = bool(int(gp))
                    ci.GLUON_COALESCED = bool(co)
                    ci.GLUON_BLOCK_H = int(bh) if bh else saved["GLUON_BLOCK_H"]
                    ci.GLUON_PIPE = int(pipe) if pipe else saved["GLUON_PIPE"]
                    if ws:
                        ci.GLUON_WS = int(num)
                        ci.GLUON_WS_REGS = int(regs) if regs else (168 if int(num) == 3 else 240)
                    else:
                        ci.launch_gluon_kernel = (lambda *args, _nw=int(num), _o=saved["launch_gluon_kernel"], **kw:
                                                  _o(*args, num_warps=_nw))
                try:
                    f = lambda: ci.cheri_block_inference(x, cw, w1, w2, a.d)  # noqa: E731
                    y = f()
                    torch.cuda.synchronize()
                    if backend == "triton":
                        ref = y
                    err = (y.float() - ref.float()).abs().max().item()
                    ms = triton.testing.do_bench(f, warmup=50, rep=300)
                except Exception as e:  # report, keep going
                    ms = err = None
                    print(backend, "failed:", repr(e)[:300])
                finally:
                    for k, v in saved.items():
                        setattr(ci, k, v)
                    ci.set_gluon_inference(False)
                rows.append({"dtype": str(dt).split(".")[-1], "backend": backend, "ms": ms,
                             "max_abs_diff_vs_triton": err})
                print(f"{rows[-1]['dtype']:9s} {backend:10s} {ms if ms is None else round(ms, 4)}  "
                      f"max|Δ| vs triton {err}")
    if a.out:
        atomic_write_text(a.out, json.dumps({"gpu": gpu, "N": a.N, "L": a.L, "C": C, "H": H, "d": a.d,
                                             "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
