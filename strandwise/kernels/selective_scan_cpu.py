"""A compiled CPU selective scan: TorchInductor C++ kernels for chunks of positions, forward and
backward.

The chunked reference (:func:`strandwise.kernels.selective_scan.selective_scan_chunked`) runs the
recurrence as one ``addcmul_`` per position and writes each chunk's decays and states to memory
before contracting them with ``C``: on this project's 2-core CPU a (2, 512, 1,024, 16) no-grad
scan is ~35–55 ms, the scan was 78 % of the Caduceus-PS forward at 4 × 1 kbp and 84 % of a
training step of docs/caduceus_training.md's CPU config (BENCHMARKS.md, "Compiled CPU scan").
Here the recurrence over a chunk of positions is written out step by step (``h = exp(Δ·A)·h +
Δ·u·B``, ``y = Σ_n C·h``) and handed to ``torch.compile``, whose C++ backend fuses the whole
chunk — decays, states and the sum over states — into vectorised OpenMP loops over (batch, state,
channel) with the channels contiguous. No ``(L, batch, d_inner, N)`` tensor is written; the state
lives in a ``(batch, N, d_inner)`` tensor between chunks. The backward (:func:`_chunk_bwd`,
:class:`CompiledScanFn`) recomputes a chunk's states from the state saved at its start and walks
it back, with the formulas of the chunked reference.

:func:`strandwise.kernels.selective_scan.selective_scan_fn` sends CPU calls here when the compute
dtype is fp32 and :func:`wanted` says so. Results equal the chunked reference's up to fp32 rounding
(the exponential and the order of the sums differ).

When (``STRANDWISE_CPU_SCAN_COMPILE``):

* ``auto`` (default): after this process has spent :data:`AUTO_AFTER_S` seconds in eager fp32 CPU
  scans (their forwards). Compiling costs ~10–45 s for inference and ~60 s more for the backward
  once per machine (TorchInductor keeps the C++ in its disk cache, ``TORCHINDUCTOR_CACHE_DIR``,
  default ``/tmp/torchinductor_<user>``) and ~5–15 s of tracing in each later process, so short
  jobs never pay for it and long ones get the fast scan after their first seconds.
* ``1``: from the first call. ``0``: never.

If compiling fails (no C++ compiler, an unsupported platform), one warning says so, the call under
way completes with the same functions run eagerly, and later calls take the chunked reference.
"""

from __future__ import annotations

import threading
import time
import warnings

import torch
import torch.nn.functional as F

from strandwise.kernels._host import env_get
from strandwise.kernels.selective_scan import _prepare as _reference_prepare
from strandwise.kernels.selective_scan import _softplus_backward, autograd_records

__all__ = ["CHUNK", "TRAIN_CHUNK", "AUTO_AFTER_S", "CompiledScanFn", "mode", "wanted", "note_eager",
           "timed_eager", "selective_scan_compiled"]

#: Positions written out per compiled call. Longer chunks trace and compile longer (the graph
#: grows with it) for fewer calls; the tail of a sequence is padded with Δ = 0 positions, which
#: leave the state unchanged (``exp(0) = 1``, no input), so one compiled function serves every
#: length.
CHUNK = 32

#: Positions per compiled call when autograd records the scan (training). The backward chunk
#: graph holds the forward recomputation and the walk back, twice the forward's, and its compile
#: time grows with it (~60 s at 16 on a 2-core CPU); the forward saves the state entering each
#: chunk of this length.
TRAIN_CHUNK = 16

#: Seconds of eager fp32 CPU scans (their forwards) after which ``auto`` compiles.
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
    """Whether the next fp32 CPU scan should take the compiled path."""
    if _state["failed"]:
        return False
    m = mode()
    return m == "on" or (m == "auto" and _state["eager_s"] >= AUTO_AFTER_S)


def note_eager(seconds: float) -> None:
    """Add an eager CPU scan's wall time (its forward) to the process's total (the ``auto``
    rule)."""
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


def _chunk_bwd(dtT, uT, A_t, BT, CT, h0, dyT, g):
    """The backward of one chunk (spec §5.4), step by step: the states are recomputed from
    ``h0`` (the state entering the chunk, saved by the forward), then walked back from the chunk's
    end, where ``g`` (b, N, d) is the gradient reaching the last state from later positions.

    Same layouts as :func:`_chunk`; ``dyT`` (T, b, d) is the gradient of ``y = Σ_n C·h``. Returns
    the gradients of Δ and u (T, b, d), of B and C (T, b, N), of A (N, d) summed over the chunk,
    and the gradient reaching ``h0``.
    """
    T = dtT.shape[0]
    hs, decays = [h0], []
    h = h0
    for t in range(T):
        dt = dtT[t][:, None, :]
        a = torch.exp(dt * A_t)
        h = a * h + (dt * uT[t][:, None, :]) * BT[t][:, :, None]
        decays.append(a)
        hs.append(h)
    ddt, du, dB, dC = [None] * T, [None] * T, [None] * T, [None] * T
    dA = None
    for t in range(T - 1, -1, -1):
        gs = CT[t][:, :, None] * dyT[t][:, None, :] + g  # dL/dh_t
        dC[t] = (dyT[t][:, None, :] * hs[t + 1]).sum(2)
        decay = gs * decays[t] * hs[t]  # g_t·a_t·h_{t-1}
        gB = (gs * BT[t][:, :, None]).sum(1)
        dB[t] = (gs * (dtT[t] * uT[t])[:, None, :]).sum(2)
        du[t] = gB * dtT[t]
        ddt[t] = gB * uT[t] + (decay * A_t).sum(1)
        dA_t = (decay * dtT[t][:, None, :]).sum(0)
        dA = dA_t if dA is None else dA + dA_t
        g = decays[t] * gs
    return torch.stack(ddt), torch.stack(du), torch.stack(dB), torch.stack(dC), dA, g


_FUNCS = {"chunk": _chunk, "gate": _gate, "chunk_bwd": _chunk_bwd}


def _compiled(name):
    """The compiled ``_chunk``, ``_gate`` or ``_chunk_bwd``."""
    with _lock:
        fns = _state["fn"]
        if fns is None:
            fns = _state["fn"] = {k: torch.compile(f, dynamic=True, fullgraph=True) for k, f in _FUNCS.items()}
        return fns[name]


#: The sizes of ``_chunk``'s and ``_chunk_bwd``'s arguments marked free: all but the chunk length.
_CHUNK_FREE = ((1, 2), (1, 2), (0, 1), (1, 2), (1, 2), (0, 1, 2))
_CHUNK_BWD_FREE = _CHUNK_FREE + ((1, 2), (0, 1, 2))


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
    """Call the compiled function ``name``; on the first call of each variant (chunk length,
    pattern of ``None`` arguments), mark the sizes free (``free``: dims per argument, ``None`` =
    all). If compiling fails (no C++ compiler, an unsupported platform), warn once, remember it
    (later scans take the chunked reference) and run the same function eagerly, so a call under
    way, a backward included, still completes."""
    # detached: a graph is compiled per requires_grad pattern, and the training Function's inputs
    # may require grad (its forward runs without grad, but the flag stays on the tensors)
    args = tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args)
    if not _state["failed"]:
        fn = _compiled(name)
        length = None if name == "gate" else args[0].shape[0]  # a chunk graph per chunk length
        variant = (name, length) + tuple(a is None for a in args)
        try:
            if variant in _state["ran"]:
                return fn(*args)
            # compile on inputs at storage offset 0: a graph compiled on a view at an offset of
            # 2 or more guards on that (Dynamo's 0/1 specialisation) and compiled again for the
            # first chunk (the backward compiles on the last chunk); one compiled at offset 0
            # serves every offset
            first = [a.clone() if isinstance(a, torch.Tensor) and a.storage_offset() else a for a in args]
            out = fn(*_mark_free(first, free or (None,) * len(args)))
            _state["ran"].add(variant)
            return out
        except Exception as exc:  # noqa: BLE001 - any compiler failure means: keep the reference
            _failed(exc)
    return _FUNCS[name](*args)


def _failed(exc):
    with _lock:
        first = not _state["failed"]
        _state["failed"] = True
    if first:
        msg = str(exc).splitlines()[0] if str(exc) else ""
        warnings.warn(
            f"strandwise: compiling the CPU selective scan failed ({type(exc).__name__}: {msg}); "
            "using the chunked PyTorch scan in this process "
            "(STRANDWISE_CPU_SCAN_COMPILE=0 skips the attempt).",
            RuntimeWarning,
            stacklevel=4,
        )


def _position_major(t, L_pad, reverse):
    """``(b, X, L)`` -> ``(L_pad, b, X)`` fp32, zero-padded to whole chunks at the end, in the
    scan's order (positions reversed for a reverse scan). Padded positions carry Δ = 0, so they
    leave the state as it is (``exp(0) = 1``, no input). The copy is a two-dimensional transpose
    ``(b·X, L)ᵀ``: PyTorch's three-dimensional permuted copy took ~2.3× longer (1.8 against 0.8 ms
    for 2 × 512 × 1,024)."""
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


def _channel_major(xT, L, reverse):
    """Inverse of :func:`_position_major`: ``(L_pad, b, X)`` -> ``(b, X, L)``, contiguous."""
    L_pad, b, x = xT.shape
    y = xT.view(L_pad, b * x)[:L]
    return (y.flip(0) if reverse else y).t().contiguous().view(b, x, L)


def _prepare(u, delta, A, B, C, D, z, delta_bias, initial_state, delta_softplus, reverse, chunk):
    """Δ and the position-major, padded inputs of the chunk loop; also ``raw = delta + bias``
    (Δ as the chunked reference computes it, in fp32 here)."""
    L = u.shape[-1]
    L_pad = -(-L // chunk) * chunk
    _, raw, dt = _reference_prepare(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state)
    dtT = _position_major(dt, L_pad, reverse)
    uT, BT, CT = (_position_major(t, L_pad, reverse) for t in (u, B, C))
    return raw, dtT, uT, BT, CT


def _state0(u, A, initial_state):
    if initial_state is not None:
        return initial_state.float().transpose(1, 2).contiguous()
    return u.new_zeros(u.shape[0], A.shape[1], u.shape[1], dtype=torch.float32)


def _run_chunks(dtT, uT, A_t, BT, CT, h, chunk, starts=None):
    """The forward chunk loop: ``yT`` (L_pad, b, d) before the gate, and the last state; with
    ``starts`` (a list), the state entering each chunk is appended to it. Those states are
    separate tensors, not views of one: Dynamo compiles storage offsets as symbols and unifies
    equal ones ("duck sizing"); a view's offset k·b·N·d equals the inputs' k·T·b·d when N = T,
    and such a guard fails on the next chunk."""
    L_pad, bsz, di = dtT.shape
    yT = dtT.new_empty(L_pad, bsz, di)
    for s in range(0, L_pad, chunk):
        e = s + chunk
        if starts is not None:
            starts.append(h)
        y, h = _call("chunk", dtT[s:e], uT[s:e], A_t, BT[s:e], CT[s:e], h, free=_CHUNK_FREE)
        yT[s:e].copy_(y)
    return yT, h


def _gated(y, u, D, z):
    """``(y + D·u)·silu(z)`` on ``(b, d, L)`` fp32 ``y`` through the compiled gate."""
    if D is None and z is None:
        return y
    bsz, di, L = y.shape
    rows = bsz * di
    out = _call("gate", y.view(rows, L), u.reshape(rows, L),
                None if D is None else D.float().repeat(bsz),
                None if z is None else z.reshape(rows, L))
    return out.view(bsz, di, L)


def _scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state, reverse):
    L = u.shape[-1]
    _, dtT, uT, BT, CT = _prepare(u, delta, A, B, C, D, z, delta_bias, initial_state, delta_softplus,
                                  reverse, CHUNK)
    yT, h = _run_chunks(dtT, uT, A.float().t().contiguous(), BT, CT, _state0(u, A, initial_state), CHUNK)
    y = _gated(_channel_major(yT, L, reverse), u, D, z)
    return y.to(u.dtype), h.transpose(1, 2).contiguous()


class CompiledScanFn(torch.autograd.Function):
    """The compiled scan with a compiled backward (training on the CPU).

    ``apply(u, delta, A, B, C, D, z, delta_bias, initial_state, delta_softplus, reverse)`` returns
    ``(out, last_state)``. The forward runs chunks of :data:`TRAIN_CHUNK` positions and keeps the
    state entering each chunk (``(b, N, d_inner)`` fp32 each) and, with a gate, ``y`` before
    it; the backward recomputes each chunk's states from its start in :func:`_chunk_bwd`, walking
    the chunks from last to first, as the chunked reference does.
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, initial_state, delta_softplus, reverse):
        L = u.shape[-1]
        _, dtT, uT, BT, CT = _prepare(u, delta, A, B, C, D, z, delta_bias, initial_state, delta_softplus,
                                      reverse, TRAIN_CHUNK)
        starts = []
        yT, h = _run_chunks(dtT, uT, A.float().t().contiguous(), BT, CT, _state0(u, A, initial_state),
                            TRAIN_CHUNK, starts)
        del dtT, uT, BT, CT
        y = _channel_major(yT, L, reverse)
        del yT
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, initial_state,
                              y if z is not None else None, *starts)
        ctx.flags = (bool(delta_softplus), bool(reverse))
        return _gated(y, u, D, z).to(u.dtype), h.transpose(1, 2).contiguous()

    @staticmethod
    def backward(ctx, dout, dlast):
        u, delta, A, B, C, D, z, delta_bias, initial_state, y, *starts = ctx.saved_tensors
        delta_softplus, reverse = ctx.flags
        bsz, di, L = u.shape
        N = A.shape[1]
        uf = u.float()
        dout = dout.float() if dout is not None else uf.new_zeros(bsz, di, L)
        dz = None
        if z is not None:
            zf = z.float()
            sz = torch.sigmoid(zf)
            y_pre = y + D.float()[:, None] * uf if D is not None else y
            dz = (dout * y_pre * sz * (1 + zf * (1 - sz))).to(z.dtype)
            dy = dout * zf * sz
            del y_pre
        else:
            dy = dout
        dD = (dy * uf).sum(dim=(0, 2)).to(D.dtype) if D is not None else None
        raw, dtT, uT, BT, CT = _prepare(u, delta, A, B, C, D, z, delta_bias, initial_state,
                                        delta_softplus, reverse, TRAIN_CHUNK)
        L_pad = dtT.shape[0]
        dyT = _position_major(dy, L_pad, reverse)
        A_t = A.float().t().contiguous()
        g = (dlast.float().transpose(1, 2).contiguous() if dlast is not None
             else uf.new_zeros(bsz, N, di))
        ddtT, duT = uf.new_empty(L_pad, bsz, di), uf.new_empty(L_pad, bsz, di)
        dBT, dCT = uf.new_empty(L_pad, bsz, N), uf.new_empty(L_pad, bsz, N)
        dA_t = uf.new_zeros(N, di)
        for k in range(len(starts) - 1, -1, -1):
            s, e = k * TRAIN_CHUNK, (k + 1) * TRAIN_CHUNK
            ddt_k, du_k, dB_k, dC_k, dA_k, g = _call(
                "chunk_bwd", dtT[s:e], uT[s:e], A_t, BT[s:e], CT[s:e], starts[k], dyT[s:e], g,
                free=_CHUNK_BWD_FREE)
            ddtT[s:e].copy_(ddt_k)
            duT[s:e].copy_(du_k)
            dBT[s:e].copy_(dB_k)
            dCT[s:e].copy_(dC_k)
            dA_t += dA_k
        del dtT, uT, BT, CT, dyT
        du = _channel_major(duT, L, reverse)
        if D is not None:
            du.addcmul_(D.float()[:, None], dy)
        ddt = _channel_major(ddtT, L, reverse)
        if delta_softplus:
            ddt = _softplus_backward(ddt, raw)
        ddelta_bias = ddt.sum(dim=(0, 2)).to(delta_bias.dtype) if delta_bias is not None else None
        dB, dC = _channel_major(dBT, L, reverse), _channel_major(dCT, L, reverse)
        dinit = g.transpose(1, 2).to(initial_state.dtype) if initial_state is not None else None
        return (du.to(u.dtype), ddt.to(delta.dtype), dA_t.t().to(A.dtype), dB.to(B.dtype), dC.to(C.dtype),
                dD, dz, ddelta_bias, dinit, None, None)


def selective_scan_compiled(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
    return_last_state=False, reverse=False, initial_state=None,
):
    """The compiled CPU scan (fp32 compute): an autograd node with the compiled backward when
    autograd records the call, else the inference chunks. Arguments and returns are those of
    :func:`strandwise.kernels.selective_scan.selective_scan_fn`; inputs are checked by the caller.
    """
    if autograd_records(u, delta, A, B, C, D, z, delta_bias, initial_state):
        out, last = CompiledScanFn.apply(u, delta, A, B, C, D, z, delta_bias, initial_state,
                                         bool(delta_softplus), bool(reverse))
    else:
        out, last = _scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state, reverse)
    return (out, last) if return_last_state else out


def timed_eager(fn):
    """Run ``fn()`` (an eager CPU scan's forward) and add its wall time to the ``auto`` total."""
    t0 = time.perf_counter()
    try:
        return fn()
    finally:
        note_eager(time.perf_counter() - t0)
