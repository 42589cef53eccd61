"""Import Lightning under either of its package names.

``lightning`` is what strandwise installs; some GPU images ship only ``pytorch_lightning``.
"""

try:  # pragma: no cover - depends on the install
    import lightning.pytorch as L
except ImportError:  # pragma: no cover
    import pytorch_lightning as L

__all__ = ["L", "resume_checkpoint", "quiet_lightning", "PROGRESS_EVERY", "log_train_loss"]

# Steps between progress-bar updates of train_loss. A progress-bar value is a host float, so
# logging one makes the host wait for the GPU; every step that would keep a small model's GPU
# idle while Python launches the next step.
PROGRESS_EVERY = 20


def log_train_loss(module, loss, step: int, batch_size: int) -> None:
    """Show ``loss`` on ``module``'s progress bar at 1-based training step ``step``, every
    :data:`PROGRESS_EVERY` steps (the first included)."""
    if (step - 1) % PROGRESS_EVERY == 0:
        module.log("train_loss", loss.detach(), prog_bar=True, on_step=True, on_epoch=False,
                   batch_size=batch_size)


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
