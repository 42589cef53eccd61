"""Import Lightning under either of its package names.

``lightning`` is what strandwise installs; some GPU images ship only ``pytorch_lightning``.
"""

try:  # pragma: no cover - depends on the install
    import lightning.pytorch as L
except ImportError:  # pragma: no cover
    import pytorch_lightning as L

__all__ = ["L", "resume_checkpoint", "quiet_lightning", "PROGRESS_EVERY"]

# Steps between progress-bar updates of train_loss. A progress-bar value is a host float, so
# logging one makes the host wait for the GPU; every step that would keep a small model's GPU
# idle while Python launches the next step.
PROGRESS_EVERY = 20


def resume_checkpoint(output_dir, resume: bool, quiet: bool):
    """Path of ``output_dir/last.ckpt`` to resume from, or None (creates ``output_dir``)."""
    import os

    if output_dir is None:
        return None
    os.makedirs(output_dir, exist_ok=True)
    last = os.path.join(output_dir, "last.ckpt")
    if resume:
        if os.path.exists(last):
            return last
        if not quiet:
            print(f"no checkpoint at {last}; starting from scratch")
    return None


def quiet_lightning() -> None:
    """Silence Lightning's banners and info logs (errors still show)."""
    import logging

    for name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
