"""Where the host time of one small selective-scan call goes (GPU machine).

At (4, 512, 1,024) a scan call's wall time is the host's: this probe times, per call, the whole
forward / backward through autograd, each piece of the Triton launch path alone (the autotuner's
dispatch, the JIT's dispatch, a direct launch of the compiled kernel), allocations, and prints a
``cProfile`` of the forward+backward loop. Host time per call = loop time over many calls with one
synchronisation at the end (the GPU keeps up, so the loop measures the host).

    PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/probe_scan_host.py [--out host.json]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import time

import torch

from bench_selective_scan import make_inputs
from strandwise.io.atomic import atomic_write_text
from strandwise.kernels._host import DIRECT


def per_call_us(fn, n=300, warm=20):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    t1 = time.perf_counter()
    torch.cuda.synchronize()
    t2 = time.perf_counter()
    return 1e6 * (t1 - t0) / n, 1e6 * (t2 - t0) / n  # host-side issue, issue + drain


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="4,512,1024")
    ap.add_argument("--out")
    args = ap.parse_args()
    batch, di, L = (int(v) for v in args.shape.split(","))
    from strandwise.kernels import selective_scan_triton as sst

    dev = torch.device("cuda")
    t = make_inputs(batch, di, L, dev)
    leaves = {k: v.clone().requires_grad_(True) for k, v in t.items()}
    res = {"gpu": torch.cuda.get_device_name(), "shape": [batch, di, L], "torch": torch.__version__}

    def fwd():
        return sst.selective_scan_triton(**leaves, delta_softplus=True)

    out = fwd()
    dout = torch.randn_like(out)

    def fwd_bwd():
        o = fwd()
        o.backward(dout)

    fwd_bwd()  # tune
    params = list(leaves.values())

    def fwd_grad():  # as bench_selective_scan.py times it: no .grad accumulation
        o = fwd()
        return torch.autograd.grad(o, params, dout)

    fwd_grad()

    def gpu_us(fn, n=100):
        # GPU time only: a sleep kernel holds the stream while the host queues n calls
        fn()
        torch.cuda.synchronize()
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda._sleep(int(2e9))
        e0.record()
        for _ in range(n):
            fn()
        e1.record()
        torch.cuda.synchronize()
        return 1e3 * e0.elapsed_time(e1) / n

    res["gpu_fwd_us"] = gpu_us(fwd)
    res["gpu_fwd_grad_us"] = gpu_us(fwd_grad)
    res["fwd_grad_us"] = per_call_us(fwd_grad, n=200)
    # the same with the backward run on the calling thread instead of autograd's CUDA device thread
    with torch.autograd.set_multithreading_enabled(False):
        res["fwd_grad_calling_thread_us"] = per_call_us(fwd_grad, n=200)
    # the wrappers alone (no autograd node), with and without the direct launches
    with torch.no_grad():
        a_ = dict(t)
        wf = lambda: sst.selective_scan_triton_fwd(  # noqa: E731
            a_["u"], a_["delta"], a_["A"], a_["B"], a_["C"], a_["D"], a_["z"], a_["delta_bias"],
            True, False, None, False)
        _, _, states, plan = wf()
        wb = lambda: sst.selective_scan_triton_bwd(  # noqa: E731
            dout, None, a_["u"], a_["delta"], a_["A"], a_["B"], a_["C"], a_["D"], a_["z"],
            a_["delta_bias"], True, False, states, plan)
        wb()
        for on in (True, False):
            DIRECT.enabled = on
            tag = "direct" if on else "dispatch"
            res[f"wrapper_fwd_{tag}_us"] = per_call_us(wf)
            res[f"wrapper_bwd_{tag}_us"] = per_call_us(wb)
        DIRECT.enabled = True
    with torch.no_grad():
        res["fwd_nograd_us"] = per_call_us(lambda: sst.selective_scan_triton(**t, delta_softplus=True))
    res["fwd_autograd_us"] = per_call_us(fwd)
    res["fwd_bwd_us"] = per_call_us(fwd_bwd, n=200)
    res["empty_alloc_us"] = per_call_us(lambda: torch.empty((batch, di, L), device=dev, dtype=torch.bfloat16))
    res["zeros_alloc_us"] = per_call_us(lambda: torch.zeros((batch, 2, 16, L), device=dev))
    small = torch.empty((8, di, 16), device=dev)
    res["small_sum_us"] = per_call_us(lambda: small.sum(dim=0))
    res["cast_us"] = per_call_us(lambda: small.to(torch.bfloat16))

    # the forward's main launch, three ways
    with torch.no_grad():
        u, delta, A, B, C, D, z, db = (t[k] for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias"))
        T, n_chunks, n_seg, seg_chunks = sst._plan(batch, di, L, dev)
        o = torch.empty_like(u)
        states = torch.empty((batch, di, n_chunks, 16), device=dev)
        hsum = torch.zeros((batch, n_seg, di, 16), device=dev)
        dsum = torch.zeros((batch, n_seg, di), device=dev)
        a = (u, delta, A, B, C, D, z, db, A, hsum, dsum, o, states, states, L, di, 16, n_seg,
             seg_chunks, n_chunks, u.stride(0), u.stride(1), delta.stride(0), delta.stride(1),
             z.stride(0), z.stride(1), B.stride(0), B.stride(1), C.stride(0), C.stride(1))
        flags = dict(HAS_D=True, HAS_Z=True, HAS_DBIAS=True, SOFTPLUS=True, HAS_H0=False,
                     REVERSE=False, STORE_LAST=False, STORE_STATES=True, NP=16, T=T)
        grid = lambda meta: (batch * n_seg, sst.cdiv(di, meta["BLOCK_D"]))  # noqa: E731
        sst._fwd_kernel_tuned[grid](*a, **flags)
        cfg = sst._fwd_kernel_tuned.best_config
        res["fwd_config"] = str(cfg)
        res["launch_autotuner_us"] = per_call_us(lambda: sst._fwd_kernel_tuned[grid](*a, **flags))
        g2 = (batch * n_seg, sst.cdiv(di, cfg.kwargs["BLOCK_D"]))
        kw = dict(flags, **cfg.kwargs, num_warps=cfg.num_warps, num_stages=cfg.num_stages)
        ck = sst._fwd_kernel[g2](*a, **kw)
        res["launch_jit_us"] = per_call_us(lambda: sst._fwd_kernel[g2](*a, **kw))
        import triton.knobs as knobs

        from triton.runtime import driver

        stream = driver.active.get_current_stream(driver.active.get_current_device())
        kparams = sst._fwd_kernel.params
        full = list(a) + [kw[p.name] for p in kparams[len(a):]]

        def direct():
            ck.run(g2[0], g2[1], 1, stream, ck.function, ck.packed_metadata, None,
                   knobs.runtime.launch_enter_hook, knobs.runtime.launch_exit_hook, *full)

        direct()
        torch.cuda.synchronize()
        res["launch_direct_us"] = per_call_us(direct)
        res["n_params"] = len(kparams)

    # the autograd engine alone: a Function with the scan's 12 inputs whose backward hands back
    # ready-made gradients (no kernels), called as fwd_grad calls the scan
    class Null(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *xs):
            return torch.empty_like(xs[0])

        @staticmethod
        def backward(ctx, g):
            return grads_null

    null_in = [leaves[k] for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")]
    grads_null = tuple(torch.zeros_like(x) for x in null_in) + (None,) * 4
    null_args = null_in + [True, False, False, None]
    res["engine_null_fwd_grad_us"] = per_call_us(
        lambda: torch.autograd.grad(Null.apply(*null_args), null_in, dout), n=300)
    res["engine_null_fwd_us"] = per_call_us(lambda: Null.apply(*null_args), n=300)
    with torch.autograd.set_multithreading_enabled(False):
        res["engine_null_fwd_grad_calling_thread_us"] = per_call_us(
            lambda: torch.autograd.grad(Null.apply(*null_args), null_in, dout), n=300)

    # where the fwd+grad host time goes, by op (CPU-side torch.profiler, self time)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(50):
            fwd_grad()
        torch.cuda.synchronize()
    res["torch_profiler_cpu"] = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
    print(res["torch_profiler_cpu"])

    pr = cProfile.Profile()
    pr.enable()
    for _ in range(100):
        fwd_bwd()
    pr.disable()
    torch.cuda.synchronize()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(30)
    res["cprofile_top"] = s.getvalue()
    print(json.dumps({k: v for k, v in res.items() if k not in ("cprofile_top", "torch_profiler_cpu")},
                     indent=1))
    print(res["cprofile_top"])
    if args.out:
        atomic_write_text(args.out, json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
