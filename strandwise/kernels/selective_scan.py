"""Mamba-1 selective scan: a chunked pure-PyTorch reference, a naive loop, and one dispatcher.

Semantics (spec ``caduceus.md`` §5.1–§5.2), per batch ``b``, channel ``c`` and state ``n``::

    Δ_t  = softplus(delta_t + delta_bias)         (if delta_softplus; threshold 20; in fp32)
    h_t  = exp(Δ_t[c]·A[c,n]) · h_{t-1} + Δ_t[c] · B_t[n] · u_t[c]     (h_{-1} = initial_state or 0)
    y_t  = Σ_n C_t[n] · h_t[c,n] + D[c] · u_t[c]
    out  = y · silu(z)                            (if z is given)

``Ā = exp(ΔA)`` is the zero-order-hold exponential but ``B̄ = Δ·B`` is the Euler form, exactly as
upstream Mamba-1. State and accumulation are fp32 (fp64 when the inputs are fp64, so ``gradcheck``
is meaningful); ``out`` is returned in ``u``'s dtype.

Three entry points:

* :func:`selective_scan_naive` — the literal sequential loop over ``L`` with plain autograd, which
  materialises ``(B, d_inner, L, N)``. Tests only.
* :func:`selective_scan_chunked` — the reference used on CPU (and on CUDA without Triton). An
  autograd ``Function`` that walks ``L`` in chunks of ``chunk_size`` positions, materialising
  ``(chunk, B, d_inner, N)`` per chunk only, and saves just the chunk-start states
  ``(B, d_inner, n_chunks, N)`` for backward, where each chunk is recomputed (spec §5.4 formulas).
  Peak extra memory is therefore independent of ``L`` beyond the ``(B, d_inner, L)`` inputs.
* :func:`selective_scan_fn` — the dispatcher: CUDA + Triton → ``selective_scan_triton`` from
  :mod:`strandwise.kernels.selective_scan_triton` (same arguments); CPU in fp32 → the compiled
  scan of :mod:`strandwise.kernels.selective_scan_cpu` when it is wanted (see there); else the
  chunked reference.

Why a per-position loop inside each chunk rather than a log-depth (Hillis–Steele) scan: on CPU the
loop body is one fused ``addcmul_`` over ``B·d_inner·N`` elements, so its cost is a few µs per
position, while a log-depth scan multiplies the dominant ``B·d_inner·L·N`` work by ``log2(chunk)``.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

__all__ = [
    "SOFTPLUS_THRESHOLD",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_TRAIN_CHUNK_SIZE",
    "selective_scan_fn",
    "selective_scan_chunked",
    "selective_scan_naive",
    "SelectiveScanChunkedFn",
]

#: softplus(x) = x above this (PyTorch's ``F.softplus(threshold=20)``, as upstream Mamba).
SOFTPLUS_THRESHOLD = 20.0
#: Positions per chunk of the reference without autograd: (chunk, B, d_inner, N) fp32 at B=2,
#: d_inner=512, N=16 is 16 MiB, large enough to amortise Python calls.
DEFAULT_CHUNK_SIZE = 256
#: Positions per chunk when autograd records the scan (training). Its backward holds three
#: (chunk, B, d_inner, N) tensors per chunk; smaller chunks keep them nearer the CPU caches. On this
#: project's 2-core CPU a PS-131k-shaped 2-layer step at 4 x 1 kbp took 6.5 s with 256, 4.5-4.8 s
#: with 32-64 and 5.5-6.6 s with 128, while the no-grad forward was fastest with 256 (1.1 vs 1.3 s).
DEFAULT_TRAIN_CHUNK_SIZE = 64


# ----------------------------------------------------------------------------------------------
# Input checking shared by every path
# ----------------------------------------------------------------------------------------------


def _check_inputs(u, delta, A, B, C, D, z, delta_bias, initial_state):
    def shape(t):
        return tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__

    if not isinstance(u, torch.Tensor) or u.ndim != 3:
        raise ValueError(f"selective_scan: u must have shape (batch, d_inner, L); got {shape(u)}")
    bsz, di, L = u.shape
    if not u.is_floating_point():
        raise TypeError(f"selective_scan: u must be floating point; got {u.dtype}")
    if not isinstance(delta, torch.Tensor) or tuple(delta.shape) != (bsz, di, L):
        raise ValueError(f"selective_scan: delta must have shape {(bsz, di, L)}; got {shape(delta)}")
    if not isinstance(A, torch.Tensor) or A.ndim != 2 or A.shape[0] != di:
        raise ValueError(f"selective_scan: A must have shape ({di}, N); got {shape(A)}")
    N = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != (bsz, N, L):
            raise ValueError(
                f"selective_scan: {name} must have shape {(bsz, N, L)} (batch, N, L); got {shape(t)}"
            )
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and (not isinstance(t, torch.Tensor) or tuple(t.shape) != (di,)):
            raise ValueError(f"selective_scan: {name} must have shape ({di},); got {shape(t)}")
    if z is not None and (not isinstance(z, torch.Tensor) or tuple(z.shape) != (bsz, di, L)):
        raise ValueError(f"selective_scan: z must have shape {(bsz, di, L)}; got {shape(z)}")
    if initial_state is not None and (
        not isinstance(initial_state, torch.Tensor) or tuple(initial_state.shape) != (bsz, di, N)
    ):
        raise ValueError(
            f"selective_scan: initial_state must have shape {(bsz, di, N)}; got {shape(initial_state)}"
        )


def _compute_dtype(*tensors) -> torch.dtype:
    # fp32 state always; fp64 only when the caller works in fp64 (gradcheck, golden tests).
    return torch.float64 if any(t is not None and t.dtype == torch.float64 for t in tensors) else torch.float32


def _softplus(x: torch.Tensor) -> torch.Tensor:
    return F.softplus(x, beta=1.0, threshold=SOFTPLUS_THRESHOLD)


def _softplus_backward(grad: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
    """``grad · softplus'(raw)``: sigmoid below the threshold, 1 above it (where softplus is the
    identity)."""
    return grad * torch.where(raw > SOFTPLUS_THRESHOLD, torch.ones_like(raw), torch.sigmoid(raw))


# ----------------------------------------------------------------------------------------------
# Naive sequential reference (tests only)
# ----------------------------------------------------------------------------------------------


def selective_scan_naive(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
    return_last_state=False, reverse=False, initial_state=None,
):
    """Literal sequential Mamba-1 scan (spec §5.2), differentiable by plain autograd.

    Materialises ``(batch, d_inner, L, N)``: use only on small shapes. Arguments and return values
    are those of :func:`selective_scan_fn`.
    """
    _check_inputs(u, delta, A, B, C, D, z, delta_bias, initial_state)
    ct = _compute_dtype(u, delta, A, B, C, D, z, delta_bias, initial_state)
    dtype_out = u.dtype
    u_, dt, A_, B_, C_ = (t.to(ct) for t in (u, delta, A, B, C))
    if delta_bias is not None:
        dt = dt + delta_bias.to(ct)[:, None]
    if delta_softplus:
        dt = _softplus(dt)
    L = u.shape[-1]
    dA = torch.exp(dt[..., None] * A_[None, :, None, :])  # (b, di, L, N)
    dBu = dt[..., None] * B_.transpose(1, 2)[:, None] * u_[..., None]  # (b, di, L, N)
    h = (
        initial_state.to(ct)
        if initial_state is not None
        else u_.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    )
    order = range(L - 1, -1, -1) if reverse else range(L)
    ys = [None] * L
    for t in order:
        h = dA[:, :, t] * h + dBu[:, :, t]
        ys[t] = (h * C_[:, :, t][:, None, :]).sum(-1)
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + D.to(ct)[:, None] * u_
    if z is not None:
        y = y * F.silu(z.to(ct))
    out = y.to(dtype_out)
    return (out, h) if return_last_state else out


# ----------------------------------------------------------------------------------------------
# Chunked reference with recompute-in-backward
# ----------------------------------------------------------------------------------------------


def _chunk_states(dtT, A, BT, uT, h0, bufs=None):
    """Run the recurrence over one chunk in forward (increasing t) order.

    Inputs are position-major so every per-step slice is contiguous. ``bufs`` — two
    ``(≥ T, b, di, N)`` scratch tensors (see :func:`_chunk_buffers`) — receive ``dA`` and ``hs``
    (their first T positions) instead of two fresh allocations: on CPU a fresh tensor of this size
    is mapped from the OS and page-faulted in on first write, which cost ~12 ms per 32 MiB
    against ~1 ms for the product itself (2-core machine, 4 × 512 channels × 16 states × 256
    positions).

    Parameters
    ----------
    dtT, uT : (T, b, di) discretisation step (after softplus) and input, compute dtype.
    A : (di, N)
    BT : (T, b, N)
    h0 : (b, di, N) state entering the chunk.

    Returns
    -------
    dA : (T, b, di, N) per-position decay ``exp(Δ·A)``.
    hs : (T, b, di, N) states ``h_t`` after each position.
    """
    if bufs is None:
        dA = torch.mul(dtT[..., None], A).exp_()
        hs = torch.mul((dtT * uT)[..., None], BT[:, :, None, :])
    else:
        T = dtT.shape[0]
        dA = torch.mul(dtT[..., None], A, out=bufs[0][:T]).exp_()
        hs = torch.mul((dtT * uT)[..., None], BT[:, :, None, :], out=bufs[1][:T])
    hs[0].addcmul_(dA[0], h0)
    for t in range(1, hs.shape[0]):
        hs[t].addcmul_(dA[t], hs[t - 1])
    return dA, hs


def _chunk_buffers(like, chunk, N, count):
    """``count`` scratch tensors ``(min(chunk, L), b, di, N)`` for the chunk loop, reused by every
    chunk of one call (``like``: a position-major ``(L, b, di)`` input)."""
    L, b, di = like.shape
    return [like.new_empty(min(chunk, L), b, di, N) for _ in range(count)]


def _contract_C(hs, CT, out=None, scratch=None):
    """``y_t[b, c] = Σ_n hs[t, b, c, n]·C_t[b, n]``: (T, b, di), into ``out`` if given.

    An elementwise product and a sum over the last (contiguous, d_state-long) axis, the product
    into ``scratch`` (a free ``(≥ T, b, di, N)`` chunk buffer) when given. On the CPU this is
    about twice as fast as the batched mat-vec ``matmul(hs, C[..., None])`` (BLAS handles the
    short 16-long dot products poorly: 1.7 vs 3.7 ms for 64 positions × 4 × 1,024 channels on this
    2-core machine); the sum's order differs from the mat-vec's, so results moved by fp32
    rounding when it changed (2026-12-08)."""
    T = hs.shape[0]
    prod = torch.mul(hs, CT[:, :, None, :], out=None if scratch is None else scratch[:T])
    return torch.sum(prod, dim=-1, out=out)


def _position_major(t, ct):
    # (b, X, L) -> (L, b, X) contiguous, in the compute dtype: one O(b·X·L) copy per call.
    return t.to(ct).permute(2, 0, 1).contiguous()


def _prepare(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state):
    ct = _compute_dtype(u, delta, A, B, C, D, z, delta_bias, initial_state)
    raw = delta.to(ct)
    if delta_bias is not None:
        raw = raw + delta_bias.to(ct)[:, None]
    dt = _softplus(raw) if delta_softplus else raw
    return ct, raw, dt


class SelectiveScanChunkedFn(torch.autograd.Function):
    """Forward-direction chunked scan with a hand-written backward (spec §5.4).

    ``apply(u, delta, A, B, C, D, z, delta_bias, initial_state, delta_softplus, chunk_size)``
    returns ``(out, last_state)``. Saves the inputs and the fp32 chunk-start states only; each chunk
    is recomputed in backward, walking the chunks from last to first.
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, initial_state, delta_softplus, chunk_size):
        bsz, di, L = u.shape
        N = A.shape[1]
        ct, _, dt = _prepare(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state)
        A_ = A.to(ct)
        h = initial_state.to(ct) if initial_state is not None else u.new_zeros(bsz, di, N, dtype=ct)
        n_chunks = max(1, -(-L // chunk_size))
        starts = u.new_empty(n_chunks, bsz, di, N, dtype=ct)
        dtT, uT, BT, CT = (_position_major(t, ct) for t in (dt, u, B, C))
        del dt  # keep peak memory at a few (b, di, L) tensors
        yT = u.new_empty(L, bsz, di, dtype=ct)
        bufs = _chunk_buffers(dtT, chunk_size, N, 2)
        for k in range(n_chunks):
            s, e = k * chunk_size, min(L, (k + 1) * chunk_size)
            starts[k] = h
            if e <= s:
                break
            _, hs = _chunk_states(dtT[s:e], A_, BT[s:e], uT[s:e], h, bufs)
            # the decays (bufs[0]) are not needed past the recurrence: the product's scratch
            _contract_C(hs, CT[s:e], out=yT[s:e], scratch=bufs[0] if bufs is not None else None)
            h = hs[-1].clone()
        del dtT, uT, BT, CT, bufs
        y = yT.permute(1, 2, 0)  # owns its storage: update in place
        if D is not None:
            y.addcmul_(D.to(ct)[:, None], u.to(ct))
        out = y.mul_(F.silu(z.to(ct))) if z is not None else y
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, initial_state, starts)
        ctx.delta_softplus = delta_softplus
        ctx.chunk_size = chunk_size
        return out.to(u.dtype), h

    @staticmethod
    def backward(ctx, dout, dlast):
        u, delta, A, B, C, D, z, delta_bias, initial_state, starts = ctx.saved_tensors
        chunk_size = ctx.chunk_size
        bsz, di, L = u.shape
        ct, raw, dt = _prepare(u, delta, A, B, C, D, z, delta_bias, ctx.delta_softplus, initial_state)
        A_, uf = A.to(ct), u.to(ct)
        dout = dout.to(ct) if dout is not None else uf.new_zeros(bsz, di, L)

        dz = None
        if z is not None:
            zf = z.to(ct)
            sz = torch.sigmoid(zf)
            dy = dout * zf * sz  # d/dy of y·silu(z)
        else:
            dy = dout
        # g carries dL/dh_t backwards; the last state's own gradient enters at t = L-1.
        g = dlast.to(ct).clone() if dlast is not None else uf.new_zeros(bsz, di, A.shape[1])
        du = (D.to(ct)[:, None] * dy) if D is not None else uf.new_zeros(bsz, di, L)
        dA = torch.zeros_like(A_)
        n_chunks = starts.shape[0]
        dtT, uT, BT, CT, dyT_all = (_position_major(t, ct) for t in (dt, uf, B, C, dy))
        duT = uf.new_zeros(L, bsz, di)
        ddtT = uf.new_zeros(L, bsz, di)
        dBT = uf.new_zeros(L, bsz, A.shape[1])
        dCT = uf.new_zeros(L, bsz, A.shape[1])
        yT = uf.new_zeros(L, bsz, di) if z is not None else None
        bufs = _chunk_buffers(dtT, chunk_size, A.shape[1], 3)  # dA/decay, hs, gs
        for k in range(n_chunks - 1, -1, -1):
            s, e = k * chunk_size, min(L, (k + 1) * chunk_size)
            if e <= s:
                continue
            h0 = starts[k]
            Bc, Cc, uc, dtc, dyc = BT[s:e], CT[s:e], uT[s:e], dtT[s:e], dyT_all[s:e]
            dAc, hs = _chunk_states(dtc, A_, Bc, uc, h0, bufs)
            if yT is not None:  # gs's buffer (bufs[2]) is free until gs is built below
                _contract_C(hs, Cc, out=yT[s:e], scratch=bufs[2])
            # gs[t] = C_t·dy_t + a_{t+1}·g_{t+1}, computed in place from the chunk end.
            gs = torch.mul(dyc[..., None], Cc[:, :, None, :], out=bufs[2][:e - s])
            gs[-1] += g  # a_{e}·g_{e} carried from the next chunk (or dL/dh_{L-1} at the end)
            for t in range(gs.shape[0] - 2, -1, -1):
                gs[t].addcmul_(dAc[t + 1], gs[t + 1])
            g = dAc[0] * gs[0]  # gradient w.r.t. the state entering this chunk
            # dC_t[n] = Σ_c dy_t[c]·h_t[c,n]
            dCT[s:e] = torch.matmul(dyc[:, :, None, :], hs).squeeze(-2)
            # decay = g_t·a_t·h_{t-1}, built in dAc's storage (a_t is no longer needed).
            dAc[1:].mul_(hs[:-1])
            dAc[0].mul_(h0)
            decay = dAc.mul_(gs)
            gB = torch.matmul(gs, Bc[..., None]).squeeze(-1)  # Σ_n g·B  (T, b, di)
            # dB_t[n] = Σ_c g_t[c,n]·Δ_t[c]·u_t[c]
            dBT[s:e] = torch.matmul((dtc * uc)[:, :, None, :], gs).squeeze(-2)
            duT[s:e] = gB * dtc
            # dΔ_t[c] = Σ_n g·(B·u + A·a·h_{t-1});  dA[c,n] = Σ_{b,t} g·Δ·a·h_{t-1}
            ddtT[s:e] = gB * uc + (decay * A_).sum(-1)
            dA += decay.mul_(dtc[..., None]).sum(dim=(0, 1))
        del bufs
        du = du + duT.permute(1, 2, 0)
        ddt = ddtT.permute(1, 2, 0)
        dB = dBT.permute(1, 2, 0)
        dC = dCT.permute(1, 2, 0)
        y_pre = yT.permute(1, 2, 0) if yT is not None else None
        dD = None
        if D is not None:
            dD = (dy * uf).sum(dim=(0, 2)).to(D.dtype)
        if z is not None:
            if D is not None:
                y_pre = y_pre + D.to(ct)[:, None] * uf
            zf = z.to(ct)
            sz = torch.sigmoid(zf)
            dz = (dout * y_pre * sz * (1 + zf * (1 - sz))).to(z.dtype)
        if ctx.delta_softplus:
            ddt = _softplus_backward(ddt, raw)
        ddelta_bias = ddt.sum(dim=(0, 2)).to(delta_bias.dtype) if delta_bias is not None else None
        dinit = g.to(initial_state.dtype) if initial_state is not None else None
        return (
            du.to(u.dtype), ddt.to(delta.dtype), dA.to(A.dtype), dB.to(B.dtype), dC.to(C.dtype),
            dD, dz, ddelta_bias, dinit, None, None,
        )


def autograd_records(*tensors) -> bool:
    """Whether autograd records a call on these arguments (grad mode on and a tensor among them
    requires grad; ``None`` and non-tensors are skipped), i.e. whether a backward can follow."""
    return torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad for t in tensors)


def selective_scan_chunked(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
    return_last_state=False, reverse=False, initial_state=None, chunk_size=None,
):
    """Chunked pure-PyTorch selective scan; never materialises ``(batch, d_inner, L, N)``.

    Arguments and returns are those of :func:`selective_scan_fn`, plus ``chunk_size`` (positions
    per chunk, >= 1; None: :data:`DEFAULT_TRAIN_CHUNK_SIZE` when autograd records the call, else
    :data:`DEFAULT_CHUNK_SIZE`; the result does not depend on it beyond rounding). ``reverse=True`` is computed as flip → forward scan → flip of the
    ``(batch, *, L)`` inputs, which costs ``O(batch·d_inner·L)`` copies, not ``O(·N)``.
    """
    _check_inputs(u, delta, A, B, C, D, z, delta_bias, initial_state)
    if chunk_size is None:
        records = autograd_records(u, delta, A, B, C, D, z, delta_bias, initial_state)
        chunk_size = DEFAULT_TRAIN_CHUNK_SIZE if records else DEFAULT_CHUNK_SIZE
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int; got {chunk_size!r}")
    if reverse:
        u, delta, B, C = (t.flip(-1) for t in (u, delta, B, C))
        z = z.flip(-1) if z is not None else None
    out, last = SelectiveScanChunkedFn.apply(
        u, delta, A, B, C, D, z, delta_bias, initial_state, bool(delta_softplus), chunk_size
    )
    if reverse:
        out = out.flip(-1)
    return (out, last) if return_last_state else out


# ----------------------------------------------------------------------------------------------
# Dispatcher
# ----------------------------------------------------------------------------------------------

_warned_no_triton_module = False


def _triton_scan():
    """The Triton implementation, or None (with a one-time warning) when its module is missing."""
    global _warned_no_triton_module
    try:
        from strandwise.kernels.selective_scan_triton import selective_scan_triton
    except ImportError as exc:
        if not _warned_no_triton_module:
            warnings.warn(
                "strandwise.kernels.selective_scan_triton is unavailable "
                f"({exc}); using the chunked PyTorch selective scan on CUDA (slow).",
                RuntimeWarning,
                stacklevel=3,
            )
            _warned_no_triton_module = True
        return None
    return selective_scan_triton


def selective_scan_fn(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
    return_last_state=False, reverse=False, initial_state=None,
):
    """Mamba-1 selective scan (spec §5.1–§5.2), dispatched by device.

    Parameters
    ----------
    u, delta : torch.Tensor, shape (batch, d_inner, L), any float dtype
        Scan input (post-conv ``x``) and the raw discretisation step.
    A : torch.Tensor, shape (d_inner, N), fp32
        State matrix (``-exp(A_log)``).
    B, C : torch.Tensor, shape (batch, N, L)
        Input-dependent input and output projections, shared by all channels.
    D : torch.Tensor, shape (d_inner,), optional
        Skip connection ``y += D·u``.
    z : torch.Tensor, shape (batch, d_inner, L), optional
        Gate: ``out = y · silu(z)``.
    delta_bias : torch.Tensor, shape (d_inner,), optional
        Added to ``delta`` before the softplus.
    delta_softplus : bool
        Apply ``softplus`` (threshold 20) to ``delta + delta_bias``.
    return_last_state : bool
        Also return the state after the last scanned position.
    reverse : bool
        Scan from position ``L-1`` down to 0 (the anti-causal direction of BiMamba).
    initial_state : torch.Tensor, shape (batch, d_inner, N), fp32, optional
        State before the first scanned position (zeros if None).

    Returns
    -------
    out : torch.Tensor, shape (batch, d_inner, L), dtype of ``u``
    last_state : torch.Tensor, shape (batch, d_inner, N), fp32 (fp64 for fp64 inputs)
        Only when ``return_last_state``.

    Notes
    -----
    CUDA tensors with Triton available run ``selective_scan_triton`` (same arguments). On the
    CPU, a call with an fp32 compute dtype may run the compiled scan of
    :mod:`strandwise.kernels.selective_scan_cpu` (``STRANDWISE_CPU_SCAN_COMPILE``: by default once
    this process has spent 20 s in such scans; equal up to fp32 rounding; a compiled backward when
    autograd records the call). Everything else runs :func:`selective_scan_chunked`. Every path
    is differentiable.
    """
    if isinstance(u, torch.Tensor) and u.is_cuda:
        from strandwise.kernels.conv_norm import triton_available

        if triton_available():
            fn = _triton_scan()
            if fn is not None:
                return fn(
                    u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias,
                    delta_softplus=delta_softplus, return_last_state=return_last_state,
                    reverse=reverse, initial_state=initial_state,
                )
    kw = dict(D=D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus,
              return_last_state=return_last_state, reverse=reverse, initial_state=initial_state)
    if isinstance(u, torch.Tensor) and u.device.type == "cpu":
        _check_inputs(u, delta, A, B, C, D, z, delta_bias, initial_state)  # clear errors first
        if _compute_dtype(u, delta, A, B, C, D, z, delta_bias, initial_state) == torch.float32:
            from strandwise.kernels import selective_scan_cpu

            if selective_scan_cpu.wanted():
                return selective_scan_cpu.selective_scan_compiled(u, delta, A, B, C, **kw)
            return selective_scan_cpu.timed_eager(lambda: selective_scan_chunked(u, delta, A, B, C, **kw))
    return selective_scan_chunked(u, delta, A, B, C, **kw)
