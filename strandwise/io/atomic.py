"""Atomic file writes: a temp file in the destination folder, then ``os.replace``.

A crash or Ctrl-C leaves either the previous file or the complete new one, never a truncated file
that looks complete.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

import torch

__all__ = ["atomic_path", "atomic_write_text", "atomic_torch_save"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ""):
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    ``suffix`` keeps an extension for writers that infer the format from the name.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(path) + ".", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        yield tmp
        # mkstemp creates 0600; give the file the permissions a plain open() would have
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def atomic_write_text(path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())


def atomic_torch_save(obj, path) -> None:
    """``torch.save`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
