"""Correlation statistics shared by training-time validation and the evaluate layer."""

from __future__ import annotations

import torch

__all__ = ["pearson_corr", "ordinal_ranks", "spearman_corr"]


def pearson_corr(a: torch.Tensor, b: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Pearson correlation along ``dim``; 0 where either input has zero variance."""
    a = a.double()
    b = b.double()
    a = a - a.mean(dim=dim, keepdim=True)
    b = b - b.mean(dim=dim, keepdim=True)
    num = (a * b).sum(dim=dim)
    den = torch.sqrt((a * a).sum(dim=dim) * (b * b).sum(dim=dim))
    out = torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(den))
    return out.float()


def ordinal_ranks(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Ordinal ranks by double argsort (ties broken by position)."""
    return torch.argsort(torch.argsort(x, dim=dim, stable=True), dim=dim, stable=True).to(torch.float64)


def spearman_corr(a: torch.Tensor, b: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Spearman correlation with ordinal ranks; 0 where a rank vector is constant."""
    return pearson_corr(ordinal_ranks(a, dim), ordinal_ranks(b, dim), dim)
