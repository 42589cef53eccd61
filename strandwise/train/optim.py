"""Optimizers and learning-rate schedules for Cherimoya (spec ``cherimoya.md`` §4.1–§4.4)."""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

__all__ = [
    "OptimizerConfig",
    "route_parameters",
    "build_optimizers",
    "build_schedulers",
    "schedule_steps",
    "warmup_cosine_lambda",
]


@dataclasses.dataclass
class OptimizerConfig:
    """Optimizer and schedule settings. Defaults are the description preset's.

    ``routing="upstream"`` gives upstream 0.3.1's three optimizers (SGD for ``lw0``/``lw1``).
    ``muon_impl="batched"`` (default) uses :class:`strandwise.train.muon.BatchedMuon` (same step
    semantics, Newton–Schulz batched over same-shape matrices); ``"torch"`` uses
    :class:`torch.optim.Muon`. ``fused_adamw`` uses PyTorch's fused AdamW kernel when every AdamW
    parameter is on CUDA (same update up to rounding).
    """

    routing: str = "description"
    muon_lr: float = 0.025
    muon_wd: float = 0.03
    muon_momentum: float = 0.95
    adam_lr: float = 1e-3
    adam_wd: float = 0.0
    adam_betas: tuple = (0.9, 0.999)
    adam_eps: float = 1e-8
    lw_lr: float = 1e-3
    lw_wd: float = 0.0
    lw_momentum: float = 0.9
    n_warmup_epochs: int = 5
    warmup_start_factor: float = 0.01
    eta_min: float = 1e-5
    min_total_steps: int = 0
    muon_impl: str = "batched"
    fused_adamw: bool = True

    def validate(self) -> None:
        if self.routing not in ("description", "upstream"):
            raise ValueError(f"routing must be 'description' or 'upstream'; got {self.routing!r}")
        for name in ("muon_lr", "adam_lr", "lw_lr"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0; got {getattr(self, name)}")
        if self.muon_impl not in ("batched", "torch"):
            raise ValueError(f"muon_impl must be 'batched' or 'torch'; got {self.muon_impl!r}")
        if self.n_warmup_epochs < 0:
            raise ValueError("n_warmup_epochs must be >= 0")

    @classmethod
    def upstream(cls) -> "OptimizerConfig":
        """Upstream 0.3.1 recipe: three optimizers, 2 warmup epochs, ≥ 20,000 steps."""
        return cls(routing="upstream", n_warmup_epochs=2, min_total_steps=20000)


def route_parameters(model: nn.Module, routing: str = "description"):
    """Split ``model.named_parameters()`` into ``(muon, adamw, sgd)`` lists of ``(name, p)``.

    ``description``: Muon gets every 2-D ``weight`` inside ``blocks`` (the block MLP projections);
    AdamW gets the rest including ``lw0``/``lw1``; SGD is empty.
    ``upstream``: ``lw0``/``lw1`` → SGD; 2-D ``weight`` other than ``linear.weight`` and
    ``conv_weight`` → Muon; rest → AdamW. Parameters with ``requires_grad=False`` are skipped.
    """
    muon, adamw, sgd = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        leaf = name.split(".")[-1]
        is_lw = name in ("lw0", "lw1")
        is_matrix = p.ndim == 2 and "weight" in name and "conv_weight" not in name
        if routing == "upstream":
            if is_lw:
                sgd.append((name, p))
            elif is_matrix and name != "linear.weight":
                muon.append((name, p))
            else:
                adamw.append((name, p))
        elif routing == "description":
            if is_matrix and name.startswith("blocks.") and leaf == "weight":
                muon.append((name, p))
            else:
                adamw.append((name, p))
        else:
            raise ValueError(f"unknown routing {routing!r}")
    return muon, adamw, sgd


def build_optimizers(model: nn.Module, cfg: OptimizerConfig) -> dict[str, torch.optim.Optimizer]:
    """Create the optimizers named ``muon``, ``adamw`` and (upstream routing) ``sgd``."""
    muon, adamw, sgd = route_parameters(model, cfg.routing)
    opts: dict[str, torch.optim.Optimizer] = {}
    if muon:
        if cfg.muon_impl == "torch":
            muon_cls = torch.optim.Muon
        elif cfg.muon_impl == "batched":
            from strandwise.train.muon import BatchedMuon as muon_cls
        else:
            raise ValueError(f"muon_impl must be 'batched' or 'torch'; got {cfg.muon_impl!r}")
        opts["muon"] = muon_cls(
            [p for _, p in muon], lr=cfg.muon_lr, weight_decay=cfg.muon_wd, momentum=cfg.muon_momentum
        )
    if adamw:
        params = [p for _, p in adamw]
        # the fused kernel exists for CUDA tensors only; CPU keeps the default implementation
        fused = bool(cfg.fused_adamw) and all(p.is_cuda for p in params)
        opts["adamw"] = torch.optim.AdamW(
            params, lr=cfg.adam_lr, weight_decay=cfg.adam_wd,
            betas=tuple(cfg.adam_betas), eps=cfg.adam_eps, **({"fused": True} if fused else {}),
        )
    if sgd:
        opts["sgd"] = torch.optim.SGD(
            [p for _, p in sgd], lr=cfg.lw_lr, momentum=cfg.lw_momentum, weight_decay=cfg.lw_wd
        )
    return opts


def schedule_steps(steps_per_epoch: int, max_epochs: int, cfg: OptimizerConfig) -> tuple[int, int, int]:
    """Warmup steps ``W``, decay steps ``D`` and the (possibly stretched) ``max_epochs``.

    With ``min_total_steps``, ``max_epochs`` grows to ``ceil(min_total_steps / steps_per_epoch)``.
    """
    steps_per_epoch = max(1, int(steps_per_epoch))
    if cfg.min_total_steps and steps_per_epoch * max_epochs < cfg.min_total_steps:
        max_epochs = math.ceil(cfg.min_total_steps / steps_per_epoch)
    warmup = steps_per_epoch * cfg.n_warmup_epochs
    decay = steps_per_epoch * max(1, max_epochs - cfg.n_warmup_epochs)
    return warmup, decay, max_epochs


def warmup_cosine_lambda(base_lr: float, warmup: int, decay: int, start_factor: float = 0.01,
                         eta_min: float = 1e-5, cosine: bool = True):
    """Multiplier ``f(step)`` such that ``lr = base_lr · f(step)`` (spec §4.4).

    Warmup ``η·(s + (1 − s)·τ/W)``; then ``eta_min + (η − eta_min)·(1 + cos(π(τ − W)/D))/2``
    (rising again past ``D``, as PyTorch's cosine does), or constant if ``cosine`` is False.
    """

    def f(step: int) -> float:
        if step < warmup:
            return start_factor + (1.0 - start_factor) * step / warmup
        if not cosine:
            return 1.0
        lr = eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * (step - warmup) / max(1, decay))) / 2
        return lr / base_lr

    return f


def build_schedulers(optimizers: dict, warmup: int, decay: int, cfg: OptimizerConfig) -> dict:
    """LambdaLR per optimizer; SGD (loss weights) warms up then stays constant."""
    scheds = {}
    for name, opt in optimizers.items():
        base = opt.param_groups[0]["lr"]
        fn = warmup_cosine_lambda(base, warmup, decay, cfg.warmup_start_factor, cfg.eta_min,
                                  cosine=(name != "sgd"))
        scheds[name] = torch.optim.lr_scheduler.LambdaLR(opt, fn)
    return scheds
