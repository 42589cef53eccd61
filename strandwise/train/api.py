"""Python API: train a Cherimoya on in-memory tensors or any profile dataset.

>>> from strandwise import Cherimoya
>>> from strandwise.train import fit, TrainConfig
>>> model = Cherimoya(n_filters=32, n_layers=4, trimming=40)
>>> result = fit(model, (X, y), valid=(X_val, y_val), config=TrainConfig(max_epochs=5))

``fit`` runs a ``lightning.Trainer`` (progress bar, CPU/GPU/multi-GPU), keeps the EMA weights of
the best validation epoch, and — given ``output_dir`` — writes ``{name}.torch`` (best EMA),
``{name}.final.torch`` (final EMA), ``{name}.log`` (TSV, one row per epoch) and ``last.ckpt`` (the
resumable trainer state) atomically.
"""

from __future__ import annotations

import dataclasses
import os
import warnings

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from strandwise.data.sampler import EpochBatchSampler, epoch_seed
from strandwise.io.atomic import atomic_torch_save, atomic_write_text
from strandwise.models.cherimoya import channel_permutation_from_groups
from strandwise.train._lightning import L, quiet_lightning, resume_checkpoint
from strandwise.train.module import CherimoyaModule, TrainConfig

__all__ = [
    "TensorProfileDataset",
    "FitResult",
    "fit",
    "LOG_COLUMNS",
]

class TensorProfileDataset(Dataset):
    """In-memory profile examples with seeded shuffling and reverse-complement augmentation.

    Parameters
    ----------
    X : torch.Tensor, shape (n, 4, L)
        One-hot sequences (any dtype; cast to float by the trainer).
    y : torch.Tensor, shape (n, O, L_out)
        Observed counts.
    X_ctl : torch.Tensor, shape (n, K, L), optional
    labels : torch.Tensor, shape (n,), optional
        1 for peaks, 0 for negatives (default all 1).
    signal_groups, control_groups : list of int, optional
        Strand grouping used to swap strands under reverse complement.
    reverse_complement : bool
        Flip each example with probability 0.5 (drawn per epoch).
    shuffle : bool
        Permute the order each epoch.
    random_state : int
    """

    def __init__(self, X, y, X_ctl=None, labels=None, signal_groups=None, control_groups=None,
                 reverse_complement=False, shuffle=True, random_state=0):
        if not isinstance(X, torch.Tensor) or X.ndim != 3 or X.shape[1] != 4:
            raise ValueError(f"X must be a tensor of shape (n, 4, L); got {getattr(X, 'shape', type(X))}")
        if not isinstance(y, torch.Tensor) or y.ndim != 3 or y.shape[0] != X.shape[0]:
            raise ValueError(
                f"y must be a tensor of shape (n={X.shape[0]}, O, L_out); got {getattr(y, 'shape', type(y))}"
            )
        if X_ctl is not None and (X_ctl.ndim != 3 or X_ctl.shape[0] != X.shape[0] or X_ctl.shape[2] != X.shape[2]):
            raise ValueError(f"X_ctl must have shape (n, K, {X.shape[2]}); got {tuple(X_ctl.shape)}")
        self.X, self.y, self.X_ctl = X, y, X_ctl
        self.labels = torch.ones(X.shape[0], dtype=torch.long) if labels is None else labels.reshape(-1).long()
        self.y_perm = channel_permutation_from_groups(signal_groups or [1] * y.shape[1])
        if len(self.y_perm) != y.shape[1]:
            raise ValueError(f"sum(signal_groups) = {len(self.y_perm)} but y has {y.shape[1]} channels")
        k = 0 if X_ctl is None else X_ctl.shape[1]
        self.ctl_perm = channel_permutation_from_groups(control_groups or [1] * k) if k else []
        self.reverse_complement = bool(reverse_complement)
        self.shuffle = bool(shuffle)
        self.random_state = int(random_state)
        self._cache = (None, None, None)

    def __len__(self) -> int:
        return self.X.shape[0]

    def _epoch_draws(self, epoch: int):
        if self._cache[0] != epoch:
            rng = np.random.RandomState(epoch_seed(self.random_state, epoch))
            n = len(self)
            order = rng.permutation(n) if self.shuffle else np.arange(n)
            rc = rng.randint(0, 2, size=n).astype(bool) if self.reverse_complement else np.zeros(n, bool)
            self._cache = (epoch, order, rc)
        return self._cache[1], self._cache[2]

    def __getitem__(self, key):
        epoch, idx = key if isinstance(key, tuple) else (0, key)
        order, rc = self._epoch_draws(epoch)
        j = int(order[idx])
        X, y = self.X[j], self.y[j]
        ctl = None if self.X_ctl is None else self.X_ctl[j]
        if rc[idx]:
            X = X.flip(-1).flip(-2)
            y = y[self.y_perm].flip(-1)
            if ctl is not None:
                ctl = ctl[self.ctl_perm].flip(-1)
        if ctl is None:
            return X, y, self.labels[j]
        return X, ctl, y, self.labels[j]


@dataclasses.dataclass
class FitResult:
    """What :func:`fit` returns: the model (best EMA weights loaded) and the per-epoch history."""

    model: torch.nn.Module
    history: list
    best_epoch: int
    best_score: float
    output_dir: str | None


#: Columns of ``{name}.log`` (one row per epoch; training columns are epoch means).
LOG_COLUMNS = (
    "epoch", "iteration", "train_time", "valid_time", "train_mnll", "train_count_mse",
    "val_mnll", "val_profile_pearson", "val_count_pearson", "val_count_mse",
    "val_count_pearson_all", "val_count_mse_all", "saved",
)


def history_tsv(history) -> str:
    lines = ["\t".join(LOG_COLUMNS)]
    for row in history:
        vals = []
        for c in LOG_COLUMNS:
            v = row.get(c, "")
            vals.append(f"{v:.6g}" if isinstance(v, float) else str(v))
        lines.append("\t".join(vals))
    return "\n".join(lines) + "\n"


class _RunArtifacts(L.callbacks.Checkpoint):
    """Writes the run's files after each epoch (a Checkpoint so it runs after module hooks)."""

    def __init__(self, output_dir: str, name: str):
        super().__init__()
        self.output_dir = output_dir
        self.name = name
        self._written_rows = 0

    def on_train_epoch_end(self, trainer, pl_module):
        tmp_ckpt = os.path.join(self.output_dir, ".last.ckpt.tmp")
        trainer.save_checkpoint(tmp_ckpt)
        if trainer.is_global_zero:
            os.replace(tmp_ckpt, os.path.join(self.output_dir, "last.ckpt"))
            hist = pl_module.history
            if len(hist) > self._written_rows:
                if hist[-1].get("saved") and pl_module.best_state is not None:
                    payload = pl_module.model.checkpoint_payload(pl_module.best_state)
                    atomic_torch_save(payload, os.path.join(self.output_dir, f"{self.name}.torch"))
                atomic_write_text(os.path.join(self.output_dir, f"{self.name}.log"), history_tsv(hist))
                self._written_rows = len(hist)


def _as_dataset(data, model, config: TrainConfig, train: bool):
    if data is None or isinstance(data, Dataset):
        return data
    if not isinstance(data, (tuple, list)) or len(data) not in (2, 3, 4):
        raise TypeError(
            "data must be a Dataset or a tuple (X, y), (X, y, labels) or (X, y, labels, X_ctl)"
        )
    X, y = data[0], data[1]
    labels = data[2] if len(data) > 2 else None
    X_ctl = data[3] if len(data) > 3 else None
    if model.n_control_tracks and X_ctl is None:
        raise ValueError(f"the model has {model.n_control_tracks} control tracks: pass (X, y, labels, X_ctl)")
    if y.shape[1] != model.n_outputs:
        raise ValueError(
            f"y has {y.shape[1]} profile channels but the model's signal_groups {model.signal_groups} "
            f"sum to {model.n_outputs}"
        )
    expected = X.shape[-1] - 2 * model.trimming
    if y.shape[-1] != expected:
        raise ValueError(
            f"y has length {y.shape[-1]} but the model maps inputs of {X.shape[-1]} bp to "
            f"{expected} output positions (trimming {model.trimming})"
        )
    return TensorProfileDataset(
        X, y, X_ctl, labels, model.signal_groups, reverse_complement=train, shuffle=train,
        random_state=config.random_state,
    )


class _EvalBatchSampler(EpochBatchSampler):
    """Validation batches: every index once, the trailing partial batch kept."""

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self):
        for b in range(len(self)):
            yield [(self.epoch, i) for i in range(b * self.batch_size, min(self.n, (b + 1) * self.batch_size))]


def _loader(ds, batch_size, num_workers, train: bool, rank: int = 0, world_size: int = 1,
            pin_memory: bool = False):
    """Batches of ``(epoch, idx)`` keys, so each item is a pure function of (seed, epoch, idx).

    Training under data parallelism: ``batch_size`` is the global batch and rank ``r`` takes the
    ``r``-th contiguous slice of every global batch, so a step sees the same examples whatever
    the number of devices. Validation is not sharded: every rank scores the whole set.
    ``pin_memory`` (set when training on CUDA) makes the host-to-device copy of a batch
    asynchronous, so the next batch is assembled while the GPU still runs the last step.
    """
    n = len(ds)
    if train:
        # floor(n / batch) batches; a set smaller than one batch trains on one short batch
        global_batch = min(batch_size, n)
        if global_batch % world_size:
            raise ValueError(
                f"batch_size {global_batch} must be divisible by the number of devices ({world_size})"
            )
        sampler = EpochBatchSampler(n, global_batch, rank=rank, world_size=world_size)
    else:
        sampler = _EvalBatchSampler(n, batch_size)
    return DataLoader(ds, batch_sampler=sampler, num_workers=num_workers, persistent_workers=False,
                      pin_memory=pin_memory)


@torch.no_grad()
def init_count_bias(model, dataset, max_items: int = 4096) -> torch.Tensor:
    """Set ``model.linear.bias`` to the mean ``log(1 + T_g)`` over (up to) ``max_items`` examples.

    Returns the per-group means. Items are read as epoch 0 of the dataset.
    """
    from strandwise.train.losses import count_targets

    n = min(len(dataset), max_items)
    if n == 0:
        return model.linear.bias.detach().clone()
    ys = []
    for i in range(n):
        item = dataset[(0, i)]
        ys.append(item[-2].float().sum(dim=-1))  # (O,) totals over length
    totals = torch.stack(ys)[:, :, None]  # (n, O, 1) so count_targets can pool the groups
    means = count_targets(totals, model.signal_groups).mean(dim=0)
    model.linear.bias.copy_(means.to(model.linear.bias))
    return means


def fit(model, train, valid=None, config: TrainConfig | None = None, output_dir: str | None = None,
        resume: bool = False, quiet: bool = False, callbacks=None) -> FitResult:
    """Train ``model`` and return it with the best validation EMA weights loaded.

    Parameters
    ----------
    model : Cherimoya
    train : Dataset or tuple
        A dataset yielding ``(X, y, label)`` / ``(X, X_ctl, y, label)`` for ``(epoch, idx)`` keys,
        or in-memory tensors ``(X, y[, labels[, X_ctl]])`` (shuffled and RC-augmented per epoch).
    valid : Dataset or tuple, optional
        Validation data (no augmentation). Without it, the final EMA weights are returned.
    config : TrainConfig, optional
    output_dir : str, optional
        Where to write checkpoints and the log; required for ``resume``.
    resume : bool
        Continue from ``output_dir/last.ckpt`` if it exists.
    quiet : bool
        No progress bar or Lightning banners.
    callbacks : list, optional
        Extra Lightning callbacks.

    Returns
    -------
    FitResult
    """
    config = config or TrainConfig()
    config.validate()
    if resume and output_dir is None:
        raise ValueError("resume=True needs output_dir (where last.ckpt lives)")
    torch.manual_seed(config.random_state)
    train_ds = _as_dataset(train, model, config, train=True)
    valid_ds = _as_dataset(valid, model, config, train=False)
    if len(train_ds) == 0:
        raise ValueError("the training set is empty")
    steps = max(1, len(train_ds) // min(config.batch_size, len(train_ds)))
    if config.init_count_bias and not (resume and output_dir and os.path.exists(os.path.join(output_dir, "last.ckpt"))):
        init_count_bias(model, train_ds)
    module = CherimoyaModule(model, config, steps)
    module.attach_data(train_ds, valid_ds, _loader)

    cbs = list(callbacks or [])
    ckpt_path = resume_checkpoint(output_dir, resume, quiet)
    if output_dir is not None:
        cbs.append(_RunArtifacts(output_dir, model.name))
    if quiet:
        quiet_lightning()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        trainer = L.Trainer(
            max_epochs=module.max_epochs,
            accelerator=config.accelerator,
            devices=config.devices,
            strategy=config.strategy,
            precision=config.precision,
            callbacks=cbs,
            enable_checkpointing=bool(output_dir),
            enable_progress_bar=not quiet,
            enable_model_summary=False,
            logger=False,
            num_sanity_val_steps=0,
            use_distributed_sampler=False,
            default_root_dir=output_dir or os.getcwd(),
            deterministic=False,
        )
        trainer.fit(module, ckpt_path=ckpt_path)

    # Final EMA weights, then the best epoch's (if validation ran).
    final_state = module.ema.shadow_state_dict(model)
    if output_dir is not None and trainer.is_global_zero:
        atomic_torch_save(model.checkpoint_payload(final_state), os.path.join(output_dir, f"{model.name}.final.torch"))
    best = module.best_state if module.best_state is not None else final_state
    model.load_state_dict(best)
    model.cpu() if config.accelerator == "cpu" else None
    return FitResult(model, list(module.history), module.best_epoch, module.best_score, output_dir)
