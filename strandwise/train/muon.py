"""Muon with batched Newton–Schulz: same-shape matrices are orthogonalised together (spec §4.3).

:class:`torch.optim.Muon` runs the Newton–Schulz iteration matrix by matrix from Python: for the
Cherimoya preset (9 blocks × ``linear1 (2C, C)`` + ``linear2 (C, 2C)``) that is 18 × 5 iterations ×
3 small products, ~300 kernel launches per step, and the step is launch-bound (~6 ms on an H200
against < 1 ms of arithmetic). :class:`BatchedMuon` groups the parameters of a param group by
matrix size up to transposition (``(min, max)`` of the shape, dtype, device), stacks their updates
in the wide orientation (where Newton–Schulz works anyway) into one ``(B, rows, cols)`` tensor and
runs the iteration with ``torch.bmm``/``torch.baddbmm`` — for Cherimoya one stack of 18 (``linear1``
transposed beside ``linear2``), ~20 launches.

Step semantics are exactly :class:`torch.optim.Muon`'s (PyTorch 2.9–2.13), per parameter:

* momentum buffer ``B ← lerp(B, g, 1 − μ)`` (= ``μ·B + (1 − μ)·g``); update
  ``U = lerp(g, B, μ)`` with Nesterov (default), else ``U = B``;
* Newton–Schulz in **bf16**: ``X = bf16(U)``, transposed if ``rows > cols``, divided by
  ``max(‖X‖_F, eps)``; ``ns_steps`` times ``A = X·Xᵀ``, ``X ← a·X + (b·A + c·A²)·X``;
  transposed back;
* decoupled weight decay ``θ ← θ·(1 − lr·wd)`` (unadjusted lr), then
  ``θ ← θ − lr·s·X`` with ``s = sqrt(max(1, rows/cols))`` (``adjust_lr_fn=None``/``"original"``)
  or ``0.2·sqrt(max(rows, cols))`` (``"match_rms_adamw"``).

State is stored per parameter under ``"momentum_buffer"``, like torch's, so ``state_dict()``\\s
load into either optimizer.

Agreement with :class:`torch.optim.Muon`: the batched bf16 products may sum in another order than
the single-matrix ones, so results may differ by bf16 rounding; the tests bound the update's
relative (Frobenius) difference per step by 1e-3 on CPU (where it has been bit-identical) and by
2e-2 on CUDA (cuBLAS may choose other kernels for batched and single bf16 GEMMs); see
``tests/train/test_muon.py``.
"""

from __future__ import annotations

import math

import torch

__all__ = ["BatchedMuon", "newton_schulz_batched"]

_DEFAULT_NS = (3.4445, -4.775, 2.0315)


def newton_schulz_batched(G: torch.Tensor, ns_coefficients=_DEFAULT_NS, ns_steps: int = 5,
                          eps: float = 1e-7) -> torch.Tensor:
    """Approximate orthogonalisation of each matrix of a stack, in bf16.

    Parameters
    ----------
    G : torch.Tensor, shape (B, rows, cols)
    ns_coefficients : (a, b, c)
    ns_steps : int, < 100
    eps : float
        Lower clamp of each matrix's Frobenius norm.

    Returns
    -------
    torch.Tensor, shape (B, rows, cols), bf16.
    """
    if G.ndim != 3:
        raise ValueError(f"G must be a (B, rows, cols) stack; got shape {tuple(G.shape)}")
    if ns_steps >= 100:
        raise ValueError("Number of steps must be less than 100 for computational efficiency")
    if len(ns_coefficients) != 3:
        raise ValueError("Coefficients must be a tuple of exactly 3 values")
    a, b, c = ns_coefficients
    X = G.bfloat16()
    tall = G.size(1) > G.size(2)
    if tall:
        X = X.transpose(1, 2)
    # per-matrix Frobenius norm, computed and rounded in bf16 like torch's X.norm()
    norm = torch.linalg.vector_norm(X, dim=(1, 2), keepdim=True)
    X = X / norm.clamp(min=eps)
    for _ in range(ns_steps):
        A = torch.bmm(X, X.transpose(1, 2))
        Bm = torch.baddbmm(A, A, A, beta=b, alpha=c)
        X = torch.baddbmm(X, Bm, X, beta=a)
    if tall:
        X = X.transpose(1, 2)
    return X


def _adjusted_ratio(adjust_lr_fn, shape) -> float:
    A, B = shape[:2]
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        return math.sqrt(max(1, A / B))
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(A, B))
    return 1.0


class BatchedMuon(torch.optim.Muon):
    """:class:`torch.optim.Muon` with Newton–Schulz batched over same-shape parameters.

    A subclass: construction, validation, defaults, param groups and state layout are torch's;
    only :meth:`step` differs (in launch count, not in arithmetic).

    Parameters
    ----------
    params : iterable of 2-D tensors or param-group dicts
    lr, weight_decay, momentum, nesterov, ns_coefficients, eps, ns_steps, adjust_lr_fn
        As :class:`torch.optim.Muon` (same defaults).

    Raises
    ------
    ValueError
        For a non-2-D parameter, negative lr/momentum/weight decay, or an unknown ``adjust_lr_fn``.
    """

    @torch.no_grad()
    def step(self, closure=None):
        """Performs a single optimization step."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr = group["lr"]
            lr = lr.item() if isinstance(lr, torch.Tensor) else float(lr)
            wd = group["weight_decay"]
            mom = group["momentum"]
            buckets: dict = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                if torch.is_complex(p):
                    raise RuntimeError("Muon does not support complex parameters")
                if p.grad.is_sparse:
                    raise RuntimeError("Muon does not support sparse gradients")
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad, memory_format=torch.preserve_format)
                # one bucket per matrix size up to transposition: Newton-Schulz works on the wide
                # orientation anyway, so (out, in) and (in, out) weights share one batched call
                shape = tuple(p.shape)
                buckets.setdefault((min(shape), max(shape), p.dtype, p.device), []).append(p)
            for (_rows, _cols, _dtype, _dev), ps in buckets.items():
                grads = [p.grad for p in ps]
                bufs = [self.state[p]["momentum_buffer"] for p in ps]
                torch._foreach_lerp_(bufs, grads, 1 - mom)
                tall = [p.size(0) > p.size(1) for p in ps]

                def wide(ts):
                    return torch.stack([t.t() if tl else t for t, tl in zip(ts, tall)])

                if group["nesterov"]:
                    upd = wide(grads).lerp_(wide(bufs), mom)
                else:
                    upd = wide(bufs)
                O = newton_schulz_batched(upd, group["ns_coefficients"], group["ns_steps"], group["eps"])
                O = O.to(ps[0].dtype)  # bf16 -> param dtype is exact; then add like param.add_(bf16)
                if wd != 0:  # multiplying by exactly 1.0 (wd = 0) would change nothing
                    torch._foreach_mul_(ps, 1 - lr * wd)
                outs = [o.t() if tl else o for o, tl in zip(O.unbind(0), tall)]
                by_ratio: dict = {}
                for p, o in zip(ps, outs):
                    r = _adjusted_ratio(group["adjust_lr_fn"], p.shape)
                    by_ratio.setdefault(r, ([], []))
                    by_ratio[r][0].append(p)
                    by_ratio[r][1].append(o)
                for r, (pp, oo) in by_ratio.items():
                    torch._foreach_add_(pp, oo, alpha=-lr * r)
        return loss
