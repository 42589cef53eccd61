"""Shared by the benchmark scripts: GPU kernel time per call, by kernel name (torch.profiler)."""

from __future__ import annotations

import torch


def cuda_kernel_ms(fn, calls: int) -> dict[str, float]:
    """``fn()`` once to warm up, then ``calls`` times under ``torch.profiler`` (CUDA activity):
    ms per call of each CUDA kernel, keyed by its name's first 60 characters."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    out: dict[str, float] = {}
    for ev in prof.key_averages():
        t = getattr(ev, "device_time_total", None)
        if t is None:
            t = ev.cuda_time_total
        if t > 0 and ev.device_type.name == "CUDA":
            key = ev.key[:60]
            out[key] = out.get(key, 0.0) + t / calls / 1e3
    return out
