"""Running a CPU batch in chunks of examples (shared by Cherimoya and Caduceus).

Both models compute every example independently (per-example normalisation, per-sequence
scans), so splitting a batch changes no result beyond float rounding. On the CPU it is much
faster for large batches: activations over 32 MB are fresh ``mmap`` allocations in glibc whose
pages fault in on every use, and they do not stay in cache from one operation to the next
(BENCHMARKS.md, "CPU path"). Models with module hooks registered are never chunked: attribution
hooks (DeepLIFT/SHAP keeps each module's forward input for its backward) and activation capture
expect one call per module per forward.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules import module as _module

__all__ = ["CPU_CHUNK_BYTES", "has_module_hooks", "chunk_size", "run_chunked"]

#: Budget (bytes) for a chunk's widest activation; read at call time (tests lower it).
CPU_CHUNK_BYTES = 16 << 20


def has_module_hooks(model: nn.Module) -> bool:
    """True if any forward/backward hook is registered on ``model``'s modules or globally."""
    if (_module._global_forward_hooks or _module._global_forward_pre_hooks
            or _module._global_backward_hooks or getattr(_module, "_global_backward_pre_hooks", None)):
        return True
    for mod in model.modules():
        if (mod._forward_hooks or mod._forward_pre_hooks or mod._backward_hooks
                or getattr(mod, "_backward_pre_hooks", None)):
            return True
    return False


def chunk_size(bytes_per_example: int, budget: int | None = None) -> int:
    """Examples per chunk so that ``chunk × bytes_per_example`` stays within ``budget`` (default
    :data:`CPU_CHUNK_BYTES`); at least 1."""
    budget = CPU_CHUNK_BYTES if budget is None else budget
    return max(1, int(budget) // max(1, int(bytes_per_example)))


def run_chunked(model: nn.Module, fn, step: int, *batched, any_device: bool = False):
    """``fn(*batched)``, run over chunks of ``step`` examples on the CPU (on any device with
    ``any_device``).

    ``batched`` are tensors split along dim 0 (``None`` passes through as ``None``); the chunk
    outputs are concatenated along dim 0 (tensors, and tuples/lists of tensors). ``fn`` runs once
    on the whole batch when it fits one chunk (or ``step`` ≤ 0), is not on the CPU (unless
    ``any_device``), or ``model`` has hooks.
    """
    first = next(t for t in batched if t is not None)
    n = first.shape[0]
    if (step <= 0 or n <= step or (first.device.type != "cpu" and not any_device)
            or has_module_hooks(model)):
        return fn(*batched)
    parts = [fn(*(None if t is None else t[i:i + step] for t in batched)) for i in range(0, n, step)]
    return _cat(parts)


def _cat(parts):
    if isinstance(parts[0], torch.Tensor):
        return torch.cat(parts)
    return type(parts[0])(_cat([p[j] for p in parts]) for j in range(len(parts[0])))
