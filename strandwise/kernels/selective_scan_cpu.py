"""A compiled CPU selective scan for inference: one TorchInductor C++ kernel per chunk of positions.

The chunked reference (:func:`strandwise.kernels.selective_scan.selective_scan_chunked`) runs the
recurrence as one ``addcmul_`` per position and writes each chunk's decays and states to memory
before contracting them with ``C``: on this project's 2-core CPU a (2, 512, 1,024, 16) no-grad
scan is ~35–55 ms, and in the Caduceus-PS forward at 4 × 1 kbp the scan was 78 % of the time
(BENCHMARKS.md, "Compiled CPU scan"). Here the recurrence over :data:`CHUNK` positions is
written out step by step (``h = exp(Δ·A)·h + Δ·u·B``, ``y = Σ_n C·h``) and handed to
``torch.compile``, whose C++ backend fuses the whole chunk — decays, states and the sum over
states — into one vectorised OpenMP loop over (batch, state, channel) with the channels
contiguous. No ``(L, batch, d_inner, N)`` tensor is written; the state lives in a
``(batch, N, d_inner)`` tensor between chunks.

Inference only (no autograd node): :func:`strandwise.kernels.selective_scan.selective_scan_fn`
sends CPU calls here when autograd does not record them, the compute dtype is fp32 and
:func:`wanted` says so. Results equal the chunked reference's up to fp32 rounding (the exponential
and the order of the sum over states differ).

When (``STRANDWISE_CPU_SCAN_COMPILE``):

* ``auto`` (default): after this process has spent :data:`AUTO_AFTER_S` seconds in eager no-grad
  CPU scans. Compiling costs ~10–45 s once per machine (TorchInductor keeps the C++ in its disk
  cache, ``TORCHINDUCTOR_CACHE_DIR``, default ``/tmp/torchinductor_<user>``) and ~5–10 s of
  tracing in each later process, so short jobs never pay for it and long ones (embedding or
  scoring many sequences) get the fast scan after their first seconds.
* ``1``: from the first call. ``0``: never.

If compiling fails (no C++ compiler, an unsupported platform), one warning says so and the process
keeps the chunked reference.
"""

from __future__ import annotations

import threading
import time
import warnings

import torch
import torch.nn.functional as F

from strandwise.kernels._host import env_get

__all__ = ["CHUNK", "AUTO_AFTER_S", "mode", "wanted", "note_eager", "timed_eager", "selective_scan_compiled"]

#: Positions written out per compiled call. Longer chunks trace and compile longer (the graph
#: grows with it) for fewer calls; the tail of a sequence is padded with Δ = 0 positions, which
#: leave the state unchanged (``exp(0) = 1``, no input), so one compiled function serves every
#: length.
CHUNK = 32

#: Seconds of eager no-grad CPU scans after which ``auto`` compiles.
AUTO_AFTER_S = 20.0

_MODES = {"auto": "auto", "1": "on", "0": "off"}

_lock = threading.Lock()
_state = {"eager_s": 0.0, "fn": None, "ran": set(), "failed": False}


def mode() -> str:
    """``STRANDWISE_CPU_SCAN_COMPILE`` as ``"auto"`` (unset or ``auto``), ``"on"`` (``1``) or
    ``"off"`` (``0``); any other value raises, naming the variable."""
    value = env_get("STRANDWISE_CPU_SCAN_COMPILE")
    if value is None or not value.strip():
        return "auto"
    key = value.strip().lower()
    if key not in _MODES:
        raise ValueError(f"STRANDWISE_CPU_SCAN_COMPILE must be auto, 1 or 0; got {value!r}")
    return _MODES[key]


def wanted() -> bool:
    """Whether the next no-grad fp32 CPU scan should take the compiled path."""
    if _state["failed"]:
        return False
    m = mode()
    return m == "on" or (m == "auto" and _state["eager_s"] >= AUTO_AFTER_S)


def note_eager(seconds: float) -> None:
    """Add an eager no-grad CPU scan's wall time to the process's total (the ``auto`` rule)."""
    _state["eager_s"] += seconds


def _chunk(dtT, uT, A_t, BT, CT, h):
    """The recurrence over one chunk, step by step (the graph ``torch.compile`` fuses).

    dtT, uT: (T, b, d) step (after softplus) and input; A_t: (N, d); BT, CT: (T, b, N);
    h: (b, N, d) state entering the chunk. Returns y: (T, b, d) and the state after the chunk.
    """
    ys = []
    for t in range(dtT.shape[0]):
        dt = dtT[t][:, None, :]
        h = torch.exp(dt * A_t) * h + (dt * uT[t][:, None, :]) * BT[t][:, :, None]
        ys.append((h * CT[t][:, :, None]).sum(1))
    return torch.stack(ys), h


def _gate(y, u, D, z):
    """``(y + D·u)·silu(z)`` in fp32 on ``(rows, L)`` tensors (``D``: ``(rows,)``), the compiled
    epilogue: one pass where eager PyTorch took four (0.36 against 5.9 ms at 1,024 × 1,024)."""
    if D is not None:
        y = y + D.float()[:, None] * u.float()
    if z is not None:
        y = y * F.silu(z.float())
    return y


_FUNCS = {"chunk": _chunk, "gate": _gate}


def _compiled(name):
    """The compiled ``_chunk`` or ``_gate``."""
    with _lock:
        fns = _state["fn"]
        if fns is None:
            fns = _state["fn"] = {k: torch.compile(f, dynamic=True, fullgraph=True) for k, f in _FUNCS.items()}
        return fns[name]


#: The sizes of ``_chunk``'s arguments marked free: all but the chunk length.
_CHUNK_FREE = ((1, 2), (1, 2), (0, 1), (1, 2), (1, 2), (0, 1, 2))


def _mark_free(args, dims_per_arg):
    """Mark sizes of ``args`` "unbacked" (any value, 0 and 1 included) before a compiling call.

    With plain ``dynamic=True`` Dynamo specialises sizes 0 and 1 and sizes that happen to be
    equal ("duck sizing"), and compiles again for each new such pattern: a batch of one sequence
    compiled the chunk a second time (~20 s), and varied shapes soon reach Dynamo's limit of 8
    compiles a function. With every size free, each function compiles once per pattern of
    ``None`` arguments. Marking matters only while compiling, as the compiled graph keeps no guard
    on these sizes, so later calls skip it (marking every chunk's six views and their bases cost
    ~0.3 ms a call, a sixth of the Caduceus-PS forward at 4 × 1 kbp). The compiled code stays
    vectorised because no compiled function transposes: with free sizes a compiled transpose lost
    its tiling and vector loads (16 ms against 3 ms at 2 × 512 × 1,024), so the layout changes
    are eager copies."""
    try:
        from torch._dynamo.decorators import mark_unbacked
    except ImportError:  # another PyTorch: such sizes then compile again; results are equal
        return args
    for t, dims in zip(args, dims_per_arg):
        if t is None:
            continue
        for k in (range(t.dim()) if dims is None else dims):
            mark_unbacked(t, k)
            if t._base is not None:  # a chunk's view: Dynamo guards its base's sizes too
                mark_unbacked(t._base, k)
    return args


def _call(name, *args, free=None):
    """Call the compiled function ``name``; on the first call of each pattern of ``None``
    arguments, mark the sizes free (``free``: dims per argument, ``None`` = all)."""
    fn = _compiled(name)
    variant = (name,) + tuple(a is None for a in args)
    if variant in _state["ran"]:
        return fn(*args)
    out = fn(*_mark_free(args, free or (None,) * len(args)))
    _state["ran"].add(variant)
    return out


def _position_major(t, L_pad, reverse):
    """``(b, X, L)`` -> ``(L_pad, b, X)`` fp32, zero-padded to whole chunks at the end, in the
    scan's order (positions reversed for a reverse scan). Padded positions carry Δ = 0, so they
    leave the state as it is (``exp(0) = 1``, no input). The copy is a two-dimensional transpose
    ``(b·X, L)ᵀ``: PyTorch's three-dimensional permuted copy took ~4× longer."""
    b, x, L = t.shape
    out = t.new_empty(L_pad, b, x, dtype=torch.float32)
    flat, src = out.view(L_pad, b * x), t.reshape(b * x, L).t()
    if reverse:  # pad first, flip the whole (contiguous) rows: a flipped transpose is slow
        flat[: L_pad - L].zero_()
        flat[L_pad - L:].copy_(src)
        return out.flip(0)
    flat[L:].zero_()
    flat[:L].copy_(src)
    return out


def _scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state, reverse):
    bsz, di, L = u.shape
    N = A.shape[1]
    L_pad = -(-L // CHUNK) * CHUNK
    raw = delta.float()
    if delta_bias is not None:
        raw = raw + delta_bias.float()[:, None]
    dt = F.softplus(raw, beta=1.0, threshold=20.0) if delta_softplus else raw
    dtT = _position_major(dt, L_pad, reverse)
    del raw, dt
    uT, BT, CT = (_position_major(t, L_pad, reverse) for t in (u, B, C))
    A_t = A.float().t().contiguous()
    if initial_state is not None:
        h = initial_state.float().transpose(1, 2).contiguous()
    else:
        h = u.new_zeros(bsz, N, di, dtype=torch.float32)
    yT = u.new_empty(L_pad, bsz, di, dtype=torch.float32)
    for s in range(0, L_pad, CHUNK):
        e = s + CHUNK
        y, h = _call("chunk", dtT[s:e], uT[s:e], A_t, BT[s:e], CT[s:e], h, free=_CHUNK_FREE)
        yT[s:e].copy_(y)
    y = yT.view(L_pad, bsz * di)[:L]
    y = (y.flip(0) if reverse else y).t().contiguous()  # (b·d_inner, L)
    if D is not None or z is not None:
        rows = bsz * di
        y = _call("gate", y, u.reshape(rows, L),
                  None if D is None else D.float().repeat(bsz),
                  None if z is None else z.reshape(rows, L))
    return y.view(bsz, di, L).to(u.dtype), h.transpose(1, 2).contiguous()


def selective_scan_compiled(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
    return_last_state=False, reverse=False, initial_state=None,
):
    """The compiled no-grad CPU scan, or ``None`` when compiling failed (warned once; the caller
    then runs the chunked reference). Arguments and returns are those of
    :func:`strandwise.kernels.selective_scan.selective_scan_fn`; inputs are checked by the caller.
    """
    try:
        out, last = _scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state, reverse)
    except Exception as exc:  # a compiler that is missing or fails: keep the reference
        with _lock:
            first = not _state["failed"]
            _state["failed"] = True
        if first:
            warnings.warn(
                "strandwise: compiling the CPU selective scan failed "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                "using the chunked PyTorch scan in this process "
                "(STRANDWISE_CPU_SCAN_COMPILE=0 skips the attempt).",
                RuntimeWarning,
                stacklevel=3,
            )
        return None
    return (out, last) if return_last_state else out


def timed_eager(fn):
    """Run ``fn()`` (an eager no-grad CPU scan) and add its wall time to the ``auto`` total."""
    t0 = time.perf_counter()
    try:
        return fn()
    finally:
        note_eager(time.perf_counter() - t0)
