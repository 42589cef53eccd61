"""Exponential moving average of model weights (spec ``cherimoya.md`` §4.5)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    """Shadow copies of a model's trainable floating parameters.

    After each optimizer step, :meth:`update` sets ``shadow ← decay·shadow + (1 − decay)·p``.
    :meth:`apply_shadow` swaps the shadow weights in (backing up the live ones) and :meth:`restore`
    swaps them back; calling :meth:`apply_shadow` twice without :meth:`restore` is an error.
    Writes use in-place ``copy_`` under ``no_grad`` (not ``.data``) so version counters advance.

    With ``warmup=True`` the decay of update ``t`` (0-based) is ``min(decay, (1 + t)/(10 + t))``:
    the shadow follows the weights closely early on, so short runs (a few hundred steps on a CPU)
    are not judged on weights that are still 90 % initialisation. ``warmup=False`` is upstream's
    constant decay.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = False):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1); got {decay}")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.num_updates = 0
        self.shadow = {
            name: p.detach().clone()
            for name, p in model.named_parameters()
            if p.requires_grad and p.is_floating_point()
        }
        self._backup: dict[str, torch.Tensor] | None = None

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        decay = self.current_decay()
        shadows, params = [], []
        for name, p in model.named_parameters():
            s = self._shadow_on(name, p.device)
            if s is not None:
                shadows.append(s)
                params.append(p.detach().to(s.dtype))
        # the same mul_ then add_ as one tensor at a time (bit-identical), in PyTorch's
        # multi-tensor kernels: two launches per step on a GPU instead of two per parameter
        torch._foreach_mul_(shadows, decay)
        torch._foreach_add_(shadows, params, alpha=1.0 - decay)
        self.num_updates += 1

    def current_decay(self) -> float:
        """Decay the next :meth:`update` will use."""
        if not self.warmup:
            return self.decay
        t = self.num_updates
        return min(self.decay, (1.0 + t) / (10.0 + t))

    def _shadow_on(self, name: str, device) -> torch.Tensor | None:
        """The shadow of ``name``, moved to ``device`` once (the trainer moves the model after
        the EMA is created)."""
        s = self.shadow.get(name)
        if s is not None and s.device != device:
            s = self.shadow[name] = s.to(device)
        return s

    @property
    def applied(self) -> bool:
        return self._backup is not None

    @torch.no_grad()
    def apply_shadow(self, model: nn.Module) -> None:
        if self._backup is not None:
            raise RuntimeError("EMA shadow is already applied; call restore() first")
        params = dict(model.named_parameters())
        self._backup = {}
        for name in list(self.shadow):
            p = params[name]
            self._backup[name] = p.detach().clone()
            p.copy_(self._shadow_on(name, p.device))

    @torch.no_grad()
    def restore(self, model: nn.Module) -> None:
        if self._backup is None:
            raise RuntimeError("EMA restore() called without apply_shadow()")
        params = dict(model.named_parameters())
        for name, b in self._backup.items():
            params[name].copy_(b)
        self._backup = None

    def shadow_state_dict(self, model: nn.Module) -> dict:
        """The model's state dict with the shadow weights substituted (what checkpoints hold)."""
        sd = model.state_dict()
        for name, s in self.shadow.items():
            if name in sd:
                sd[name] = s.detach().clone().to(sd[name].dtype)
        return sd

    def state_dict(self) -> dict:
        return {
            "decay": self.decay,
            "warmup": self.warmup,
            "num_updates": self.num_updates,
            "shadow": {k: v.detach().cpu() for k, v in self.shadow.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        self.decay = float(state["decay"])
        self.warmup = bool(state.get("warmup", False))
        self.num_updates = int(state.get("num_updates", 0))
        for k, v in state["shadow"].items():
            if k in self.shadow:
                self.shadow[k].copy_(v.to(self.shadow[k].device))
