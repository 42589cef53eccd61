"""Host-side integer helpers for the kernel wrappers.

Triton 3.6's ``triton.cdiv`` and ``triton.next_power_of_2`` are ``ConstexprFunction`` objects
(usable inside kernels too); called from Python each costs ~2.7 µs of argument unwrapping on this
project's CI machine against ~0.03 µs for plain integer arithmetic. A selective-scan forward and
backward made ~25 such calls, a measurable part of the launch-bound wall time of small scans.
"""

from __future__ import annotations

__all__ = ["cdiv", "next_pow2"]


def cdiv(a: int, b: int) -> int:
    """Ceiling division of non-negative ``a`` by positive ``b``."""
    return -(-a // b)


def next_pow2(n: int) -> int:
    """Smallest power of two ≥ ``n`` (1 for ``n ≤ 1``), as ``triton.next_power_of_2``."""
    return 1 if n <= 1 else 1 << (n - 1).bit_length()
