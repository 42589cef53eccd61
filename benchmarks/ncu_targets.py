"""Driver for Nsight Compute: the kernels the open targets hinge on, each run once inside an NVTX
range ``profile`` after its autotuning and two warm calls (``ncu --nvtx --nvtx-include profile/``
profiles only that call; see ncu_round.sh).

    python benchmarks/ncu_targets.py {infer,infer_gluon_ws,infer_gluon_c,infer_gluon_model,stats_model,scan_fwd}

* ``infer``: the Cheri block inference call through the Triton megakernel, bf16, N=512, L=1024,
  C=128, d=4 (stats prepass + MLP pass; target 0.20 ms, measured 0.345–0.387);
* ``infer_gluon_ws``: the same call as dispatched by default on sm_90 since round 17: the
  warp-specialised Gluon MLP pass (0.278 on an H100 with the packed GELU, round 19);
* ``infer_gluon_c``: the same call through round 10's plain 8-warp Gluon pass with coalesced I/O
  (0.373 on an H100);
* ``infer_gluon_model``: the default call at the model's length with its widest dilation (L 2,114,
  d 256; 0.686 ms on an H100, round 19), where the MLP pass costs ~30 % more per row than at d 4;
* ``stats_model``: the statistics pass alone at the model's shape (N 512, L 2,114, C 128, bf16),
  d 16 then d 256 (two profiled calls): 18 % of the whole model's bf16 inference, ~61 % of DRAM
  bandwidth (round 19); is L2 throughput (three tap reads per element) what bounds it?
* ``scan_fwd``: the selective-scan forward at (8, 1024, 4096), the row 7 % behind upstream.
"""

import sys

import torch


def _profile(f):
    with torch.no_grad():
        for _ in range(3):  # autotuning, then warm calls
            f()
        torch.cuda.synchronize()
        torch.cuda.nvtx.range_push("profile")
        f()
        torch.cuda.nvtx.range_pop()


def main(which):
    torch.manual_seed(0)
    if which.startswith("infer"):
        from strandwise.kernels import cheri_infer as ci

        if which == "infer":
            ci.set_gluon_inference(False)
        elif which == "infer_gluon_c":
            ci.set_gluon_inference(True)
            ci.GLUON_WS, ci.GLUON_BLOCK_H, ci.GLUON_COALESCED = 0, 64, True
        C = 128
        L, d = (2114, 256) if which == "infer_gluon_model" else (1024, 4)
        x = torch.randn(512, L, C, device="cuda").bfloat16()
        cw = torch.randn(3, C, device="cuda")
        w1 = torch.randn(2 * C, C, device="cuda") * 0.02
        w2 = torch.randn(C, 2 * C, device="cuda") * 0.02
        f = lambda: ci.cheri_block_inference(x, cw, w1, w2, d)  # noqa: E731
        _profile(f)
    elif which == "stats_model":
        from strandwise.kernels import conv_norm_triton as cnt

        x = torch.randn(512, 2114, 128, device="cuda").bfloat16()
        w = torch.randn(3, 128, device="cuda")
        for d in (16, 256):
            _profile(lambda: cnt.conv_norm_stats(x, w, d, 1e-3))
    elif which == "scan_fwd":
        sys.path.insert(0, "benchmarks")
        from bench_selective_scan import make_inputs
        from strandwise.kernels.selective_scan import selective_scan_fn

        a = make_inputs(8, 1024, 4096, "cuda")
        f = lambda: selective_scan_fn(a["u"], a["delta"], a["A"], a["B"], a["C"], a["D"], a["z"],  # noqa: E731
                                      a["delta_bias"], delta_softplus=True)
        _profile(f)
    else:
        raise SystemExit(f"unknown target {which!r}")
    torch.cuda.synchronize()


if __name__ == "__main__":
    main(sys.argv[1])
