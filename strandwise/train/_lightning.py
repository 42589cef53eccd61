"""Import Lightning under either of its package names.

``lightning`` is what strandwise installs; some GPU images ship only ``pytorch_lightning``.
"""

try:  # pragma: no cover - depends on the install
    import lightning.pytorch as L
except ImportError:  # pragma: no cover
    import pytorch_lightning as L

__all__ = ["L"]
