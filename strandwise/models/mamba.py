"""Our own Mamba-1 mixer and RMSNorm with fused add+norm semantics (spec ``caduceus.md`` §5).

Key names and shapes match upstream Mamba ``v1.2.0.post1`` so published Caduceus weights load:
``A_log (di, N)``, ``D (di,)``, ``in_proj.weight (2di, d)``, ``conv1d.weight (di, 1, 4)``,
``conv1d.bias (di,)``, ``x_proj.weight (r+2N, di)``, ``dt_proj.weight (di, r)``,
``dt_proj.bias (di,)``, ``out_proj.weight (d, di)``.
"""

from __future__ import annotations

import contextlib
import math
import threading

import torch
from torch import nn

from strandwise.kernels.add_rms_norm import add_rms_norm, rms_norm
from strandwise.kernels.causal_conv import causal_conv1d, causal_conv1d_silu
from strandwise.kernels.mamba_inner import mamba_inner_fn
from strandwise.kernels.selective_scan import selective_scan_fn

__all__ = ["Mamba", "RMSNorm", "rms_norm", "causal_conv1d", "causal_conv1d_silu", "fused_inner_suspended"]

class _FusedState(threading.local):
    off = False  # per thread: set by fused_inner_suspended


_fused_state = _FusedState()


@contextlib.contextmanager
def fused_inner_suspended():
    """Within this context :class:`Mamba` runs its plain autograd path even when
    ``use_fast_path`` is set. Activation-checkpointed blocks use it: checkpointing already
    recomputes the block in backward, and the fused function would recompute its inner part a
    second time (measured on an H200 at 4 × 131,072 bp, all 16 blocks checkpointed: 3.52 s per
    step fused vs 3.27 s plain, same peak memory)."""
    prev = _fused_state.off
    _fused_state.off = True
    try:
        yield
    finally:
        _fused_state.off = prev


class RMSNorm(nn.Module):
    """RMSNorm (no bias, no mean subtraction) with the fused add+norm call of upstream Mamba.

    ``forward(x, residual=None, prenorm=False, residual_in_fp32=False)``:

    * ``S = x + residual`` is computed in fp32 (``S = x`` without a residual);
    * the normalised output ``rms_w(S)`` is returned in ``x``'s dtype;
    * with ``prenorm`` the new residual ``S`` is returned too, in the incoming residual's dtype, or
      (no residual) fp32 if ``residual_in_fp32`` else ``x``'s dtype. Because Caduceus' first
      residual is the fp32 embedding output, the residual stream stays fp32 under autocast.

    Parameters
    ----------
    hidden_size : int
    eps : float
    """

    def __init__(self, hidden_size: int, eps: float = 1e-5):
        super().__init__()
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.ones(hidden_size))

    def forward(self, x, residual=None, prenorm=False, residual_in_fp32=False):
        out, s = add_rms_norm(x, residual, self.weight, self.eps)  # one Triton kernel on CUDA
        ct = s.dtype
        if not prenorm:
            return out
        if residual is not None:
            res_dtype = residual.dtype
        else:
            res_dtype = ct if residual_in_fp32 else x.dtype
        return out, s.to(res_dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


class Mamba(nn.Module):
    """Mamba-1 mixer (spec §5.1): in_proj → causal depthwise conv → SiLU → x_proj → dt_proj →
    selective scan (Δ softplus inside, D skip, SiLU(z) gate) → out_proj.

    Parameters
    ----------
    d_model : int
    d_state : int
        N (16 in every published Caduceus).
    d_conv : int
        Conv kernel width (4).
    expand : int
        ``d_inner = expand·d_model``.
    dt_rank : int or "auto"
        ``ceil(d_model / 16)`` when "auto".
    dt_min, dt_max, dt_init, dt_scale, dt_init_floor
        Initialisation of ``dt_proj`` (spec §5.3).
    conv_bias, bias : bool
        Bias on conv1d (True) / on in_proj and out_proj (False).
    use_fast_path : bool
        When autograd records on CUDA, run everything between ``in_proj`` and ``out_proj`` as
        :func:`~strandwise.kernels.mamba_inner.mamba_inner_fn` (saves only ``in_proj``'s output,
        recomputes the conv and projections in backward; upstream's ``mamba_inner_fn`` plays this
        part). False, on CPU, without grad and inside activation-checkpointed blocks
        (:func:`fused_inner_suspended`): plain autograd through the same ops.
    layer_idx
        Accepted for config compatibility.

    Forward: ``u (B, L, d_model) -> (B, L, d_model)``; ``reverse=True`` runs the mixer
    anti-causally, i.e. equals ``flip_L(M(flip_L(u)))`` without materialising flips of the
    ``(B, L, ·, N)`` work.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank="auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        use_fast_path: bool = True,
        layer_idx: int | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        fk = {"device": device, "dtype": dtype}
        self.d_model = int(d_model)
        self.d_state = int(d_state)
        self.d_conv = int(d_conv)
        self.expand = int(expand)
        self.d_inner = self.expand * self.d_model
        self.dt_rank = math.ceil(self.d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.use_fast_path = use_fast_path
        self.layer_idx = layer_idx
        if dt_init not in ("random", "constant"):
            raise ValueError(f"dt_init must be 'random' or 'constant'; got {dt_init!r}")

        # S4D-real initialisation A = -[1..N] per channel; kept in fp32 (spec §5.3).
        A = torch.arange(1, self.d_state + 1, dtype=torch.float32, device=device).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(self.d_inner, device=device))
        self.D._no_weight_decay = True

        self.in_proj = nn.Linear(self.d_model, 2 * self.d_inner, bias=bias, **fk)
        self.conv1d = nn.Conv1d(
            self.d_inner, self.d_inner, kernel_size=self.d_conv, groups=self.d_inner,
            bias=conv_bias, padding=self.d_conv - 1, **fk,
        )
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * self.d_state, bias=False, **fk)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True, **fk)
        self.out_proj = nn.Linear(self.d_inner, self.d_model, bias=bias, **fk)

        with torch.no_grad():
            std = self.dt_rank ** -0.5 * dt_scale
            if dt_init == "random":
                nn.init.uniform_(self.dt_proj.weight, -std, std)
            else:
                nn.init.constant_(self.dt_proj.weight, std)
            # dt ~ log-uniform in [dt_min, dt_max]; bias = softplus^{-1}(dt) so softplus(bias) = dt.
            dt = torch.exp(
                torch.rand(self.d_inner, device=device) * (math.log(dt_max) - math.log(dt_min))
                + math.log(dt_min)
            ).clamp(min=dt_init_floor)
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.dt_proj.bias._no_reinit = True

    def forward(self, hidden_states: torch.Tensor, reverse: bool = False, inference_params=None):
        if hidden_states.ndim != 3 or hidden_states.shape[-1] != self.d_model:
            raise ValueError(
                f"Mamba(d_model={self.d_model}) expects (B, L, {self.d_model}); got "
                f"{tuple(hidden_states.shape)}"
            )
        L = hidden_states.shape[1]
        # Channel-major (B, C, L) from in_proj to out_proj, the scan's layout: every projection is
        # one batched product that writes its output in that layout, so no (B, L, d_inner) tensor
        # is ever transposed by a copy (on an H200 those copies were 29 % of a 131 kbp step).
        nb = hidden_states.shape[0]

        def proj(lin, t):  # (B, in, L) -> (B, out, L)
            y = torch.bmm(lin.weight.unsqueeze(0).expand(nb, -1, -1), t)
            return y if lin.bias is None else y + lin.bias.to(y.dtype)[:, None]

        xz = proj(self.in_proj, hidden_states.transpose(1, 2))  # (B, 2di, L)
        A = -torch.exp(self.A_log.float())
        if (self.use_fast_path and xz.is_cuda and torch.is_grad_enabled()
                and not _fused_state.off):
            # training on CUDA: one autograd node from xz to out_proj that keeps only xz (and the
            # scan's chunk states) and recomputes the conv and the projections in backward
            out = mamba_inner_fn(
                xz, self.conv1d.weight, self.conv1d.bias, self.x_proj.weight, self.dt_proj.weight,
                A, self.D.float(), self.dt_proj.bias.float(), self.out_proj.weight,
                self.out_proj.bias, d_state=self.d_state, reverse=reverse,
            )
            return out.transpose(1, 2)
        x, z = xz[:, : self.d_inner], xz[:, self.d_inner :]
        x = causal_conv1d_silu(x, self.conv1d.weight, self.conv1d.bias, reverse=reverse)
        x_dbl = proj(self.x_proj, x)  # (B, r+2N, L)
        dt_low, Bm, Cm = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=1)
        delta = torch.bmm(self.dt_proj.weight.unsqueeze(0).expand(nb, -1, -1), dt_low)  # bias: in the scan
        y = selective_scan_fn(
            x, delta, A, Bm, Cm, D=self.D.float(), z=z,
            delta_bias=self.dt_proj.bias.float(), delta_softplus=True, reverse=reverse,
        )
        assert y.shape[-1] == L
        return proj(self.out_proj, y).transpose(1, 2)

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, d_inner={self.d_inner}, d_state={self.d_state}, "
            f"d_conv={self.d_conv}, dt_rank={self.dt_rank}"
        )
