"""GELU(tanh) on CPU tensors, computed in cache-sized row chunks.

``gelu_tanh(z) = 0.5·z·(1 + tanh(u)) = z·σ(2u)``, with ``2u = z·(C1 + C3·z²)``, ``C1 = 2·√(2/π)``,
``C3 = C1·0.044715``. This is an identity, not an approximation. The sigmoid form also avoids the
cancellation in ``1 + tanh(u)`` for large negative ``z``.

PyTorch's CPU kernel for ``F.gelu(approximate="tanh")`` took 3.7–5.9 ms on a (8, 2,114, 192)
fp32 tensor on the project's 2-core machine. One ``tanh`` or ``sigmoid`` pass over the same tensor
takes 0.6–0.75 ms. Computing the formula 1,024 rows at a time keeps every intermediate in cache,
and the forward then takes ~2.5 ms. The Cheri Blocks' CPU inference uses it
(:class:`strandwise.models.CheriBlock`), except when module hooks are registered: those must see
the ``nn.GELU`` module's call (e.g. DeepLIFT's rules). Training keeps ``nn.GELU`` (see
``cherimoya._cpu_gelu_applies``).
"""

from __future__ import annotations

import torch

__all__ = ["gelu_tanh_cpu", "CHUNK_ROWS"]

C1 = 1.5957691216057308  # 2·sqrt(2/π)
C3 = 0.0713548162726009  # 2·sqrt(2/π)·0.044715
#: rows (of the last dimension) per chunk: 1,024 × 192 fp32 = 768 KB per buffer
CHUNK_ROWS = 1024


def _rows(t: torch.Tensor) -> torch.Tensor:
    return t.view(-1, t.shape[-1]) if t.dim() > 1 else t.view(1, -1)


def _forward_into(z: torch.Tensor, out: torch.Tensor) -> None:
    """``out = gelu_tanh(z)`` (``out`` may be ``z``), both contiguous with the same shape."""
    zf, of = _rows(z), _rows(out)
    n = zf.shape[0]
    buf = torch.empty((min(CHUNK_ROWS, n), zf.shape[1]), dtype=z.dtype)
    for i in range(0, n, CHUNK_ROWS):
        zc, oc = zf[i:i + CHUNK_ROWS], of[i:i + CHUNK_ROWS]
        b = buf[: zc.shape[0]]
        torch.mul(zc, zc, out=b)
        b.mul_(C3).add_(C1).mul_(zc)     # 2u
        torch.sigmoid(b, out=b)
        torch.mul(zc, b, out=oc)


def gelu_tanh_cpu(z: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """GELU(tanh) of a contiguous fp32/fp64 CPU tensor that needs no gradient (module
    docstring); ``inplace=True`` overwrites ``z`` (the caller owns it). Everything else — a
    gradient to record, CUDA, other dtypes, non-contiguous, empty — goes to ``F.gelu``."""
    if (z.device.type != "cpu" or z.dtype not in (torch.float32, torch.float64)
            or not z.is_contiguous() or z.numel() == 0 or (torch.is_grad_enabled() and z.requires_grad)):
        return torch.nn.functional.gelu(z, approximate="tanh")
    out = z if inplace else torch.empty_like(z)
    _forward_into(z, out)
    return out
