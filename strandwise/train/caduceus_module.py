"""Lightning training for Caduceus: masked-LM pretraining and sequence classification.

Spec ``caduceus.md`` §6. One code path for one CPU, one GPU or many GPUs (DDP through Lightning):
loaders are built per rank in ``train_dataloader()`` (rank ``r`` takes the ``r``-th contiguous slice
of every global batch, :class:`~strandwise.data.sampler.EpochBatchSampler`), so the global batch
and every example's masks/augmentation do not depend on the device count.

Recipes (defaults, quoted from the spec):

* **Pretraining** (§6.2): AdamW lr 8e-3, weight decay 0.1, betas (0.9, 0.95); no decay on biases,
  ``A_log``, ``D`` and the (tied) embedding, RMSNorm weights decayed; linear warmup from 1e-6 over
  10 % of the steps (prefixed), then cosine to 1e-4; gradient clipping 1.0 (norm); 10,000 steps of
  2^20 tokens at 1k; seed 2222.
* **Fine-tuning** (§6.3, Genomic Benchmarks): 10 epochs, batch 256, lr 2e-3 (Table 5's most common
  Ph choice; the search is {1e-3, 2e-3}), AdamW wd 0.1, betas (0.9, 0.999), 1 % linear warmup from
  1e-6 (not prefixed), cosine to 0.1·lr; clip 1.0; seed 2222; 90/10 train/validation split with
  fold seed 1..5; model selection on validation accuracy. PS: ``conjoin_train`` (both strands
  scored in training and evaluation). Ph: ``conjoin_test`` (RC augmentation in training, both
  strands averaged in evaluation). Mean pooling excludes padding by default (``pooling="mean_all"``
  reproduces upstream's mean over every position).

Precision: ``"auto"`` = ``bf16-mixed`` on CUDA, ``32-true`` elsewhere (upstream used fp16,
``"16-mixed"``). Gradient accumulation: ``accumulate_grad_batches``. Activation checkpointing:
``model.gradient_checkpointing`` (per block, stride configurable).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import time
import warnings

import torch
from torch import nn
import torch.nn.functional as F

from strandwise.models.caduceus import (
    CaduceusConfig,
    DNAEmbeddingModelCaduceus,
    CaduceusForMaskedLM,
    pool_hidden,
)
from strandwise.train._lightning import L, log_train_loss, quiet_lightning, resume_checkpoint

__all__ = [
    "CaduceusModelConfig",
    "CaduceusOptimConfig",
    "PretrainTrainConfig",
    "FinetuneTrainConfig",
    "CaduceusClassifier",
    "CNNBaseline",
    "MLMModule",
    "ClassifierModule",
    "caduceus_param_groups",
    "caduceus_lr_lambda",
    "build_mlm_model",
    "build_classifier",
    "save_classifier",
    "load_classifier",
    "pretrain",
    "finetune",
    "predict_logits",
    "resolve_precision",
]

PAD_ID = 4


# ================================================================================================
# Configs
# ================================================================================================


@dataclasses.dataclass
class CaduceusModelConfig:
    """Which model to build.

    Attributes
    ----------
    kind : {"caduceus", "cnn"}
        ``cnn`` = the CNN baseline (fine-tuning only).
    variant : {"ps", "ph"}
        PS = RC-equivariant (rcps); Ph = plain BiMamba (RC augmentation / post-hoc conjoining).
    d_model, n_layer, d_state : int
        Size of a fresh model (GB backbone: 118 / 4 / 16; ignored with ``pretrained``).
    pretrained : str or None
        A checkpoint directory (``strandwise pretrain`` output or a published hub download).
    gradient_checkpointing : bool
        Recompute blocks in the backward pass (segments of ``gradient_checkpointing_stride``).
    gradient_checkpointing_blocks : int or None
        With checkpointing on, recompute only the first k blocks (None = all): faster steps for
        the memory that the other blocks' activations take.
    pooling : {"mean", "mean_all", "max", "first", "last"}
        Classification pooling; ``mean`` ignores padding.
    conjoin_train, conjoin_test, rc_aug : bool or None
        None = the protocol: PS → conjoin_train; Ph → conjoin_test and RC augmentation.
    cnn_channels, cnn_kernel : CNN baseline shape (GB CNN: 16/8/4 channels).
    """

    kind: str = "caduceus"
    variant: str = "ps"
    d_model: int = 118
    n_layer: int = 4
    d_state: int = 16
    pretrained: str | None = None
    gradient_checkpointing: bool = False
    gradient_checkpointing_stride: int = 1
    gradient_checkpointing_blocks: int | None = None
    pooling: str = "mean"
    conjoin_train: bool | None = None
    conjoin_test: bool | None = None
    rc_aug: bool | None = None
    cnn_channels: list = dataclasses.field(default_factory=lambda: [16, 8, 4])
    cnn_kernel: int = 8

    def validate(self) -> None:
        if self.kind not in ("caduceus", "cnn"):
            raise ValueError(f"model.kind must be 'caduceus' or 'cnn'; got {self.kind!r}")
        if self.variant not in ("ps", "ph"):
            raise ValueError(f"model.variant must be 'ps' or 'ph'; got {self.variant!r}")
        if self.pooling not in ("mean", "mean_all", "max", "first", "last"):
            raise ValueError(f"model.pooling must be mean, mean_all, max, first or last; got {self.pooling!r}")
        for k in ("d_model", "n_layer", "d_state", "gradient_checkpointing_stride", "cnn_kernel"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"model.{k} must be a positive int; got {v!r}")

    def caduceus_config(self) -> CaduceusConfig:
        """A fresh config shaped like the published ones (spec §3.1) at this size."""
        from strandwise.models.caduceus import _published

        d = _published(self.d_model, self.n_layer, self.variant == "ps")
        d["ssm_cfg"]["d_state"] = self.d_state
        d["gradient_checkpointing"] = self.gradient_checkpointing
        d["gradient_checkpointing_stride"] = self.gradient_checkpointing_stride
        d["gradient_checkpointing_blocks"] = self.gradient_checkpointing_blocks
        return CaduceusConfig.from_dict(d)

    def strand_protocol(self, rcps: bool) -> tuple[bool, bool, bool]:
        """``(conjoin_train, conjoin_test, rc_aug)`` after protocol defaults (spec §6.3)."""
        ct = self.conjoin_train if self.conjoin_train is not None else rcps
        ce = self.conjoin_test if self.conjoin_test is not None else (not rcps)
        rc = self.rc_aug if self.rc_aug is not None else (not rcps and not ct)
        return bool(ct), bool(ce), bool(rc and not ct)


@dataclasses.dataclass
class CaduceusOptimConfig:
    """AdamW + warmup/cosine (timm ``CosineLRScheduler`` semantics, stepped per optimizer step).

    ``lr_min`` is absolute; ``lr_min_ratio`` (if set) overrides it with ``ratio · lr``.
    ``warmup_prefix``: the cosine starts after the warmup (pretraining) or counts from step 0
    (fine-tuning).
    """

    lr: float = 8e-3
    weight_decay: float = 0.1
    betas: list = dataclasses.field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    warmup_fraction: float = 0.1
    warmup_lr_init: float = 1e-6
    lr_min: float = 1e-4
    lr_min_ratio: float | None = None
    warmup_prefix: bool = True

    def validate(self) -> None:
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError("optim.lr must be > 0 and optim.weight_decay >= 0")
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"optim.warmup_fraction must be in [0, 1); got {self.warmup_fraction}")
        if len(self.betas) != 2:
            raise ValueError("optim.betas must be two numbers")

    @property
    def min_lr(self) -> float:
        return self.lr * self.lr_min_ratio if self.lr_min_ratio is not None else self.lr_min


def _finetune_optim() -> CaduceusOptimConfig:
    return CaduceusOptimConfig(lr=2e-3, betas=[0.9, 0.999], warmup_fraction=0.01, lr_min_ratio=0.1,
                               warmup_prefix=False)


@dataclasses.dataclass
class _TrainerConfig:
    precision: str = "auto"
    accumulate_grad_batches: int = 1
    gradient_clip_val: float | None = 1.0
    num_workers: int = 0
    accelerator: str = "auto"
    devices: int | str = 1
    strategy: str = "auto"
    seed: int = 2222

    def _validate_trainer(self) -> None:
        if self.precision not in ("auto", "32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "64-true"):
            raise ValueError(f"train.precision must be auto, 32-true, bf16-mixed or 16-mixed; got {self.precision!r}")
        if self.accumulate_grad_batches < 1:
            raise ValueError("train.accumulate_grad_batches must be >= 1")


@dataclasses.dataclass
class PretrainTrainConfig(_TrainerConfig):
    """MLM recipe. ``batch_size`` is the global batch per optimizer step ÷ accumulation.

    Upstream 1k: 10,000 steps × 1,024 windows (2^20 tokens); validate every ``max_steps / 5``
    steps; checkpoint every 500 steps.
    """

    max_steps: int = 10000
    batch_size: int = 1024
    validation_batch_size: int = 64
    validate_every: int | None = None
    checkpoint_every: int = 500
    max_valid_windows: int | None = 2048
    optim: CaduceusOptimConfig = dataclasses.field(default_factory=CaduceusOptimConfig)

    def validate(self) -> None:
        self._validate_trainer()
        if self.max_steps < 1 or self.batch_size < 1 or self.checkpoint_every < 1:
            raise ValueError("train.max_steps, train.batch_size and train.checkpoint_every must be >= 1")
        self.optim.validate()


@dataclasses.dataclass
class FinetuneTrainConfig(_TrainerConfig):
    """Fine-tuning recipe (GB protocol defaults, spec §6.3). ``monitor`` picks the best epoch."""

    max_epochs: int = 10
    batch_size: int = 256
    validation_batch_size: int = 256
    monitor: str = "accuracy"
    optim: CaduceusOptimConfig = dataclasses.field(default_factory=_finetune_optim)

    def validate(self) -> None:
        self._validate_trainer()
        if self.max_epochs < 1 or self.batch_size < 1:
            raise ValueError("train.max_epochs and train.batch_size must be >= 1")
        if self.monitor not in ("accuracy", "mcc", "f1", "auroc", "loss"):
            raise ValueError(f"train.monitor must be accuracy, mcc, f1, auroc or loss; got {self.monitor!r}")
        self.optim.validate()


def resolve_precision(precision: str) -> str:
    if precision == "auto":
        return "bf16-mixed" if torch.cuda.is_available() else "32-true"
    return precision


# ================================================================================================
# Optimizer and schedule
# ================================================================================================


def caduceus_param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups as upstream (§6.2, §5.9): no decay for biases, ``A_log``, ``D``, embeddings
    (and the head tied to them), LayerNorm/BatchNorm; everything else (RMSNorm weights included)
    decays. Tied parameters appear once."""
    no_decay_ids = set()
    for m in model.modules():
        if isinstance(m, (nn.Embedding, nn.LayerNorm, nn.BatchNorm1d)):
            no_decay_ids.update(id(p) for p in m.parameters(recurse=False))
    decay, no_decay, seen = [], [], set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        leaf = name.split(".")[-1]
        if (leaf in ("bias", "A_log", "D") or id(p) in no_decay_ids or "embedding" in name
                or getattr(p, "_no_weight_decay", False)):
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def caduceus_lr_lambda(cfg: CaduceusOptimConfig, total_steps: int):
    """Multiplier ``f(step)`` with ``lr(step) = cfg.lr · f(step)``.

    ``W = round(warmup_fraction · total)``. Warmup: ``lr_init + (lr − lr_init)·step/W``. After it,
    ``lr_min + (lr − lr_min)(1 + cos(π t/T))/2`` with ``t = step − W, T = total − W`` (prefixed) or
    ``t = step, T = total`` (not prefixed), held at ``lr_min`` past ``T``.
    """
    total = max(1, int(total_steps))
    W = int(round(cfg.warmup_fraction * total))
    lr, lo, init = cfg.lr, cfg.min_lr, cfg.warmup_lr_init

    def f(step: int) -> float:
        if step < W:
            return (init + (lr - init) * step / W) / lr
        t, T = (step - W, max(1, total - W)) if cfg.warmup_prefix else (step, total)
        t = min(t, T)
        return (lo + (lr - lo) * 0.5 * (1 + math.cos(math.pi * t / T))) / lr

    return f


def _configure(model, cfg: CaduceusOptimConfig, total_steps: int):
    opt = torch.optim.AdamW(caduceus_param_groups(model, cfg.weight_decay), lr=cfg.lr,
                            betas=tuple(cfg.betas), eps=cfg.eps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, caduceus_lr_lambda(cfg, total_steps))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


# ================================================================================================
# Models
# ================================================================================================


class CaduceusClassifier(nn.Module):
    """Caduceus backbone + pooling + ``Linear(d, num_classes)`` with the GB/NT strand handling.

    ``forward(input_ids (B, L)) -> logits (B, num_classes)``. With two strands (PS always; Ph with
    ``conjoin_train``, or ``conjoin_test`` in eval) each strand is pooled (the RC strand aligned to
    forward coordinates, so one padding mask serves both) and scored, and the logits are averaged.
    """

    def __init__(self, backbone: DNAEmbeddingModelCaduceus, num_classes: int, pooling: str = "mean"):
        super().__init__()
        self.backbone = backbone
        self.config = backbone.config
        self.pooling = pooling
        self.num_classes = int(num_classes)
        self.head = nn.Linear(backbone.d_output, self.num_classes)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        fwd = input_ids[..., 0] if input_ids.ndim == 3 else input_ids
        mask = fwd != PAD_ID
        h, _ = self.backbone(input_ids)
        if h.ndim == 4:
            return torch.stack([self.head(pool_hidden(h[..., k], mask, self.pooling)) for k in range(2)]).mean(0)
        return self.head(pool_hidden(h, mask, self.pooling))


class CNNBaseline(nn.Module):
    """The Genomic Benchmarks CNN baseline shape: one-hot → 3 × [Conv1d(k) → BN → ReLU → MaxPool(2)]
    with 16/8/4 channels → flatten → Linear(·, 512) → ReLU → Linear(512, K).

    Takes the same token ids as Caduceus (``(B, L)``; PAD/N/specials are all-zero one-hot).
    """

    def __init__(self, max_length: int, num_classes: int, channels=(16, 8, 4), kernel: int = 8):
        super().__init__()
        layers, c_in, L_out = [], 4, max_length
        for c in channels:
            layers += [nn.Conv1d(c_in, c, kernel, padding=kernel // 2), nn.BatchNorm1d(c), nn.ReLU(), nn.MaxPool1d(2)]
            c_in, L_out = c, (L_out + 2 * (kernel // 2) - kernel + 1) // 2
        if L_out < 1:
            raise ValueError(f"max_length {max_length} is too short for {len(channels)} conv/pooling layers")
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c_in * L_out, 512), nn.ReLU(), nn.Linear(512, num_classes))
        self.num_classes = int(num_classes)
        self.max_length = int(max_length)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        ids = input_ids[..., 0] if input_ids.ndim == 3 else input_ids
        base = ids.long() - 7
        x = F.one_hot(base.clamp(0, 3), 4).float() * ((base >= 0) & (base < 4))[..., None]
        return self.classifier(self.features(x.transpose(1, 2)))


def _load_backbone_state(model: nn.Module, directory: str) -> None:
    """Load a checkpoint directory's weights into ``model`` (a Caduceus wrapper), alias-aware."""
    from strandwise.models.caduceus import _WEIGHT_FILES, _read_weights

    path = next((os.path.join(directory, f) for f in _WEIGHT_FILES if os.path.isfile(os.path.join(directory, f))), None)
    if path is None:
        raise FileNotFoundError(f"{directory}: no weights file; expected one of {', '.join(_WEIGHT_FILES)}")
    model.load_checkpoint_state(_read_weights(path), source=path)


def _pretrained_config(cfg: CaduceusModelConfig) -> CaduceusConfig:
    from strandwise.models.caduceus import _resolve_dir

    d = _resolve_dir(cfg.pretrained)
    path = os.path.join(d, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{d}: config.json is missing; is this a Caduceus checkpoint directory?")
    c = CaduceusConfig.from_json(path)
    c.gradient_checkpointing = cfg.gradient_checkpointing
    c.gradient_checkpointing_stride = cfg.gradient_checkpointing_stride
    c.gradient_checkpointing_blocks = cfg.gradient_checkpointing_blocks
    return c


def build_mlm_model(cfg: CaduceusModelConfig, seed: int = 0) -> CaduceusForMaskedLM:
    """A fresh (seeded) or pretrained :class:`CaduceusForMaskedLM`."""
    torch.manual_seed(seed)
    if cfg.pretrained:
        model = CaduceusForMaskedLM(_pretrained_config(cfg))
        _load_backbone_state(model, cfg.pretrained)
        return model
    return CaduceusForMaskedLM(cfg.caduceus_config())


def build_classifier(cfg: CaduceusModelConfig, num_classes: int, max_length: int, seed: int = 0) -> nn.Module:
    """The classifier the config describes: CNN baseline, or Caduceus (fresh or pretrained)."""
    torch.manual_seed(seed)
    if cfg.kind == "cnn":
        return CNNBaseline(max_length, num_classes, tuple(cfg.cnn_channels), cfg.cnn_kernel)
    ccfg = _pretrained_config(cfg) if cfg.pretrained else cfg.caduceus_config()
    ct, ce, _ = cfg.strand_protocol(ccfg.rcps)
    backbone = DNAEmbeddingModelCaduceus(ccfg, conjoin_train=ct, conjoin_test=ce, aligned=True)
    if cfg.pretrained:
        _load_backbone_state(backbone, cfg.pretrained)
    return CaduceusClassifier(backbone, num_classes, cfg.pooling)


def save_classifier(model: nn.Module, directory: str, meta: dict) -> None:
    """``classifier.safetensors`` (deduplicated tensors) + ``classifier.json`` (how to rebuild)."""
    from safetensors.torch import save_file

    from strandwise.io.atomic import atomic_path, atomic_write_text
    from strandwise.models.caduceus import alias_map

    os.makedirs(directory, exist_ok=True)
    aliases = alias_map(model)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k not in aliases}
    with atomic_path(os.path.join(directory, "classifier.safetensors"), suffix=".safetensors") as tmp:
        save_file(tensors, tmp, metadata={"format": "pt"})
    if isinstance(model, CaduceusClassifier):
        meta = dict(meta, caduceus_config=model.config.to_dict())
    atomic_write_text(os.path.join(directory, "classifier.json"), json.dumps(meta, indent=2) + "\n")


def load_classifier(directory: str) -> tuple[nn.Module, dict]:
    """Inverse of :func:`save_classifier`: ``(model in eval mode, meta)``."""
    from safetensors.torch import load_file

    with open(os.path.join(directory, "classifier.json"), encoding="utf-8") as fh:
        meta = json.load(fh)
    mcfg = CaduceusModelConfig(**meta["model"])
    if mcfg.kind == "cnn":
        model = CNNBaseline(meta["max_length"], meta["num_classes"], tuple(mcfg.cnn_channels), mcfg.cnn_kernel)
    else:
        ccfg = CaduceusConfig.from_dict(meta["caduceus_config"])
        ct, ce, _ = mcfg.strand_protocol(ccfg.rcps)
        model = CaduceusClassifier(DNAEmbeddingModelCaduceus(ccfg, ct, ce, aligned=True), meta["num_classes"], mcfg.pooling)
    from strandwise.models.caduceus import alias_map

    sd = load_file(os.path.join(directory, "classifier.safetensors"))
    model.load_state_dict(sd, strict=False)  # tied aliases are absent from the file on purpose
    missing = set(model.state_dict()) - set(sd) - set(alias_map(model))
    if missing:
        raise ValueError(f"{directory}: classifier weights lack {sorted(missing)[:5]}")
    return model.eval(), meta


# ================================================================================================
# Lightning modules
# ================================================================================================


class _Base(L.LightningModule):
    """Per-rank loaders, epoch-keyed batch samplers, history, checkpoint state."""

    def __init__(self, model, cfg):
        super().__init__()
        self.model, self.cfg = model, cfg
        self.history: list[dict] = []
        self._train_sum = torch.zeros(())
        self._train_n = 0
        self._skip_batches = 0

    def attach_data(self, train_ds, valid_ds, make_loader):
        self._train_ds, self._valid_ds, self._make_loader = train_ds, valid_ds, make_loader

    def train_dataloader(self):
        t = self.trainer
        return self._make_loader(self._train_ds, self.cfg.batch_size, self.cfg.num_workers, True,
                                 rank=t.global_rank, world_size=t.world_size)

    def val_dataloader(self):
        if self._valid_ds is None:
            return []
        return self._make_loader(self._valid_ds, self.cfg.validation_batch_size, self.cfg.num_workers, False)

    def on_train_epoch_start(self):
        # Lightning only calls set_epoch on samplers, not on a batch_sampler: do it here so each
        # epoch draws its own order and augmentation (items are keyed by (epoch, idx)).
        bs = getattr(self.trainer.train_dataloader, "batch_sampler", None)
        if hasattr(bs, "set_epoch"):
            bs.set_epoch(self.current_epoch)
            # A checkpoint written at an epoch's end records all of that epoch's batches as done,
            # and Lightning resumes with the next epoch: skip only a partly trained epoch's batches.
            bs.skip = self._skip_batches if self._skip_batches < len(bs) else 0
            self._skip_batches = 0

    def _train_mean(self) -> float:
        s = torch.stack([self._train_sum.to(self.device).float(), torch.tensor(float(self._train_n), device=self.device)])
        if self.trainer.world_size > 1:
            s = self.trainer.strategy.reduce(s, reduce_op="sum")
        self._train_sum, self._train_n = torch.zeros(()), 0
        return float(s[0] / s[1]) if float(s[1]) > 0 else math.nan

    def on_save_checkpoint(self, checkpoint):
        checkpoint["strandwise"] = {"history": copy.deepcopy(self.history), **self._extra_state()}

    def on_load_checkpoint(self, checkpoint):
        st = checkpoint.get("strandwise") or {}
        self.history = list(st.get("history", []))
        self._load_extra_state(st)
        # resume mid-epoch: skip the batches of this epoch that were already trained on
        try:
            done = checkpoint["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["completed"]
            self._skip_batches = int(done)
        except (KeyError, TypeError):
            self._skip_batches = 0

    def _extra_state(self):
        return {}

    def _load_extra_state(self, st):
        pass


class MLMModule(_Base):
    """Masked-LM pretraining of a :class:`CaduceusForMaskedLM`.

    Logs ``train_loss`` per step; each validation gives ``val_loss`` (mean CE over masked targets,
    nats/token), ``val_perplexity = exp(val_loss)`` and ``val_accuracy`` (masked-token accuracy).
    """

    def __init__(self, model: CaduceusForMaskedLM, cfg: PretrainTrainConfig):
        super().__init__(model, cfg)
        self._seg_start, self._seg_tokens, self._seg_seconds = None, 0, math.nan

    def configure_optimizers(self):
        return _configure(self.model, self.cfg.optim, self.cfg.max_steps)

    def training_step(self, batch, batch_idx):
        inputs, targets = batch
        if self._seg_start is None:  # throughput is timed from the first step after a validation
            self._seg_start, self._seg_tokens = time.perf_counter(), 0
        self._seg_tokens += int(inputs.shape[0]) * int(inputs.shape[1])
        out = self.model(inputs, labels=targets)
        loss = out.loss
        self._train_sum = self._train_sum.to(loss.device) + loss.detach().float()
        self._train_n += 1
        log_train_loss(self, loss, self._train_n, inputs.shape[0])
        return loss

    def on_validation_epoch_start(self):
        self._v = torch.zeros(3, dtype=torch.float64)
        if self._seg_start is not None and not self.trainer.sanity_checking:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)  # the queued training steps belong to this interval
            self._seg_seconds = time.perf_counter() - self._seg_start

    def validation_step(self, batch, batch_idx):
        inputs, targets = batch
        logits = self.model(inputs).logits
        valid = targets != self.model.config.ignore_index
        ce = F.cross_entropy(logits[valid].float(), targets[valid], reduction="sum") if valid.any() else logits.sum() * 0
        correct = (logits.argmax(-1)[valid] == targets[valid]).sum()
        self._v += torch.stack([ce.double().cpu(), valid.sum().double().cpu(), correct.double().cpu()])

    def on_validation_epoch_end(self):
        if self.trainer.sanity_checking:
            return
        ce, n, correct = self._v.tolist()
        loss = ce / n if n else math.nan
        row = {
            "step": int(self.global_step),
            "epoch": int(self.current_epoch),
            "train_loss": self._train_mean(),
            "val_loss": loss,
            "val_perplexity": math.exp(loss) if n else math.nan,
            "val_accuracy": correct / n if n else math.nan,
            "val_tokens": int(n),
            "lr": float(self.trainer.optimizers[0].param_groups[0]["lr"]) if self.trainer.optimizers else math.nan,
            # training tokens per second over all ranks since the previous validation (validation
            # time excluded; the first interval includes compilation and autotuning)
            "train_tokens_per_s": (self._seg_tokens * self.trainer.world_size / self._seg_seconds
                                   if self._seg_start is not None and self._seg_seconds > 0 else math.nan),
        }
        self._seg_start, self._seg_tokens, self._seg_seconds = None, 0, math.nan
        self.history.append(row)
        self.log("val_loss", loss, prog_bar=True)
        self.log("val_accuracy", row["val_accuracy"], prog_bar=True)


class ClassifierModule(_Base):
    """Sequence classification; validation each epoch gives loss, accuracy, MCC, F1, AUROC, and the
    best epoch's weights (by ``cfg.monitor``) are kept."""

    def __init__(self, model: nn.Module, cfg: FinetuneTrainConfig, total_steps: int):
        super().__init__(model, cfg)
        self.total_steps = int(total_steps)
        self.best_score, self.best_epoch, self.best_state = -math.inf, -1, None

    def configure_optimizers(self):
        return _configure(self.model, self.cfg.optim, self.total_steps)

    def training_step(self, batch, batch_idx):
        ids, y = batch
        loss = F.cross_entropy(self.model(ids).float(), y)
        self._train_sum = self._train_sum.to(loss.device) + loss.detach().float()
        self._train_n += 1
        log_train_loss(self, loss, self._train_n, ids.shape[0])
        return loss

    def on_validation_epoch_start(self):
        self._logits, self._labels = [], []

    def validation_step(self, batch, batch_idx):
        ids, y = batch
        self._logits.append(self.model(ids).float().cpu())
        self._labels.append(y.cpu())

    def on_validation_epoch_end(self):
        from strandwise.evaluate.classification import classification_metrics

        if self.trainer.sanity_checking or not self._labels:
            return
        logits, labels = torch.cat(self._logits), torch.cat(self._labels)
        m = classification_metrics(logits, labels)
        m["loss"] = float(F.cross_entropy(logits, labels))
        score = -m["loss"] if self.cfg.monitor == "loss" else m[self.cfg.monitor]
        score = -math.inf if math.isnan(score) else score
        improved = score > self.best_score
        if improved:
            self.best_score, self.best_epoch = score, int(self.current_epoch)
            self.best_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        row = {"epoch": int(self.current_epoch), "step": int(self.global_step), "train_loss": self._train_mean(),
               **{f"val_{k}": v for k, v in m.items()}, "saved": bool(improved)}
        self.history.append(row)
        self.log("val_accuracy", m["accuracy"], prog_bar=True)
        self.log("val_mcc", m["mcc"], prog_bar=True)

    def _extra_state(self):
        return {"best_score": self.best_score, "best_epoch": self.best_epoch, "best_state": self.best_state}

    def _load_extra_state(self, st):
        self.best_score = st.get("best_score", -math.inf)
        self.best_epoch = st.get("best_epoch", -1)
        self.best_state = st.get("best_state")


# ================================================================================================
# Loaders and the trainer
# ================================================================================================


def _make_loader(ds, batch_size, num_workers, train: bool, rank: int = 0, world_size: int = 1):
    """Like the Cherimoya loader, with a batch sampler that can skip the first batches (resume)."""
    from torch.utils.data import DataLoader

    n = len(ds)
    if train:
        gb = min(batch_size, n)
        if gb % world_size:
            raise ValueError(f"batch_size {gb} must be divisible by the number of devices ({world_size})")
        sampler = _SkippingBatchSampler(n, gb, rank=rank, world_size=world_size)
    else:
        sampler = _EvalBatches(n, batch_size)
    return DataLoader(ds, batch_sampler=sampler, num_workers=num_workers, persistent_workers=False)


def _sampler_classes():
    from strandwise.data.sampler import EpochBatchSampler

    class SkippingBatchSampler(EpochBatchSampler):
        skip = 0

        def __iter__(self):
            it = super().__iter__()
            for b, batch in enumerate(it):
                if b >= self.skip:
                    yield batch
            self.skip = 0

    class EvalBatches(EpochBatchSampler):
        def __len__(self):
            return -(-self.n // self.batch_size)

        def __iter__(self):
            for b in range(len(self)):
                yield [(0, i) for i in range(b * self.batch_size, min(self.n, (b + 1) * self.batch_size))]

    return SkippingBatchSampler, EvalBatches


_SkippingBatchSampler, _EvalBatches = _sampler_classes()


class _Artifacts(L.callbacks.Checkpoint):
    """``last.ckpt`` (atomic) every ``every`` optimizer steps and at epoch/train end; history TSV."""

    def __init__(self, output_dir: str, every: int | None = None, history_name: str = "history.tsv"):
        super().__init__()
        self.output_dir, self.every, self.history_name = output_dir, every, history_name
        self._last = -1

    def _save(self, trainer, pl_module):
        key = (trainer.global_step, len(pl_module.history))  # a validation after a save changes it
        if key == self._last:
            return
        self._last = key
        tmp = os.path.join(self.output_dir, ".last.ckpt.tmp")
        trainer.save_checkpoint(tmp)
        if trainer.is_global_zero:
            os.replace(tmp, os.path.join(self.output_dir, "last.ckpt"))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.every and trainer.global_step > 0 and trainer.global_step % self.every == 0:
            self._save(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module):
        self._save(trainer, pl_module)

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking or not pl_module.history:
            return
        if trainer.is_global_zero:
            from strandwise.io.atomic import atomic_write_text

            atomic_write_text(os.path.join(self.output_dir, self.history_name), history_tsv(pl_module.history))
        if self.every and trainer.global_step % self.every == 0:
            self._save(trainer, pl_module)  # so the checkpoint holds this validation's row


def history_tsv(history: list[dict]) -> str:
    cols = []
    for row in history:
        cols += [k for k in row if k not in cols]
    lines = ["\t".join(cols)]
    for row in history:
        lines.append("\t".join(f"{row[c]:.6g}" if isinstance(row.get(c), float) else str(row.get(c, "")) for c in cols))
    return "\n".join(lines) + "\n"


def _strategy(cfg):
    if cfg.strategy == "ddp":
        return L.strategies.DDPStrategy(find_unused_parameters=False, gradient_as_bucket_view=True)
    return cfg.strategy


def _run(module, cfg, output_dir, resume, quiet, callbacks, **trainer_kwargs):
    ckpt_path = resume_checkpoint(output_dir, resume, quiet)
    cbs = list(callbacks)
    if quiet:
        quiet_lightning()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        warnings.filterwarnings("ignore", message=".*val_check_interval.*")
        warnings.filterwarnings("ignore", message=".*dataloader is not resumable.*")  # batches are skipped by the sampler
        warnings.filterwarnings("ignore", message=".*sync_dist=True.*")  # every rank validates the whole set
        trainer = L.Trainer(
            accelerator=cfg.accelerator, devices=cfg.devices, strategy=_strategy(cfg),
            precision=resolve_precision(cfg.precision), callbacks=cbs,
            accumulate_grad_batches=cfg.accumulate_grad_batches, gradient_clip_val=cfg.gradient_clip_val,
            enable_checkpointing=output_dir is not None, enable_progress_bar=not quiet,
            enable_model_summary=False, logger=False, num_sanity_val_steps=0,
            use_distributed_sampler=False, default_root_dir=output_dir or os.getcwd(), **trainer_kwargs,
        )
        trainer.fit(module, ckpt_path=ckpt_path)
    return trainer


@dataclasses.dataclass
class PretrainResult:
    model: CaduceusForMaskedLM
    history: list
    output_dir: str | None


def pretrain(model: CaduceusForMaskedLM, train_ds, valid_ds=None, cfg: PretrainTrainConfig | None = None,
             output_dir: str | None = None, resume: bool = False, quiet: bool = False, callbacks=()) -> PretrainResult:
    """Masked-LM pretraining for ``cfg.max_steps`` optimizer steps.

    Writes (with ``output_dir``): ``last.ckpt`` (every ``checkpoint_every`` steps, resumable),
    ``history.tsv`` (one row per validation) and ``model/`` (``save_pretrained`` of the final
    weights: ``config.json`` + ``model.safetensors``, loadable by ``finetune``/``embed``/``vep``).
    """
    cfg = cfg or PretrainTrainConfig()
    cfg.validate()
    if len(train_ds) == 0:
        raise ValueError("no training windows: check the FASTA, the BED file and the chromosome splits")
    if resume and output_dir is None:
        raise ValueError("resume=True needs output_dir (where last.ckpt lives)")
    torch.manual_seed(cfg.seed)
    module = MLMModule(model, cfg)
    module.attach_data(train_ds, valid_ds, _make_loader)
    every = cfg.validate_every or max(1, cfg.max_steps // 5)
    cbs = list(callbacks) + ([_Artifacts(output_dir, cfg.checkpoint_every)] if output_dir else [])
    val_kwargs = {}
    if valid_ds is not None and len(valid_ds):
        val_kwargs = dict(check_val_every_n_epoch=None, val_check_interval=every * cfg.accumulate_grad_batches)
    else:
        val_kwargs = dict(limit_val_batches=0)
    trainer = _run(module, cfg, output_dir, resume, quiet, cbs, max_steps=cfg.max_steps, max_epochs=-1, **val_kwargs)
    if output_dir is not None and trainer.is_global_zero:
        model.save_pretrained(os.path.join(output_dir, "model"))
        from strandwise.io.atomic import atomic_write_text

        atomic_write_text(os.path.join(output_dir, "history.tsv"), history_tsv(module.history))
    return PretrainResult(model, list(module.history), output_dir)


@dataclasses.dataclass
class FinetuneResult:
    model: nn.Module
    history: list
    best_epoch: int
    metrics: dict
    output_dir: str | None


@torch.no_grad()
def predict_logits(model: nn.Module, dataset, batch_size: int = 256, device: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits (n, K), labels (n,))`` over a :class:`LabelledDataset` in order, in eval mode."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    was_training = model.training
    model.eval().to(device)
    out, ys = [], []
    for b in range(0, len(dataset), batch_size):
        items = [dataset[(0, i)] for i in range(b, min(len(dataset), b + batch_size))]
        ids = torch.stack([x for x, _ in items]).to(device)
        out.append(model(ids).float().cpu())
        ys.append(torch.stack([y for _, y in items]))
    model.train(was_training)
    if not out:
        return torch.zeros(0, getattr(model, "num_classes", 2)), torch.zeros(0, dtype=torch.int64)
    return torch.cat(out), torch.cat(ys)


def finetune(model: nn.Module, train_ds, valid_ds, test_sets: dict | None = None, cfg: FinetuneTrainConfig | None = None,
             output_dir: str | None = None, resume: bool = False, quiet: bool = False, callbacks=(),
             meta: dict | None = None) -> FinetuneResult:
    """Fine-tune a classifier; keep the best validation epoch; evaluate it on ``test_sets``.

    Writes (with ``output_dir``): ``last.ckpt``, ``history.tsv``, ``metrics.json`` (validation and
    test metrics of the best epoch) and ``classifier/`` (:func:`save_classifier`).
    """
    from strandwise.evaluate.classification import classification_metrics
    from strandwise.io.atomic import atomic_write_text

    cfg = cfg or FinetuneTrainConfig()
    cfg.validate()
    if len(train_ds) == 0:
        raise ValueError("the training set is empty")
    torch.manual_seed(cfg.seed)
    per_epoch = max(1, len(train_ds) // min(cfg.batch_size, len(train_ds)))
    total = math.ceil(per_epoch / cfg.accumulate_grad_batches) * cfg.max_epochs
    module = ClassifierModule(model, cfg, total)
    module.attach_data(train_ds, valid_ds, _make_loader)
    cbs = list(callbacks) + ([_Artifacts(output_dir)] if output_dir else [])
    t0 = time.perf_counter()
    trainer = _run(module, cfg, output_dir, resume, quiet, cbs, max_epochs=cfg.max_epochs,
                   **({} if valid_ds is not None and len(valid_ds) else {"limit_val_batches": 0}))
    train_seconds = time.perf_counter() - t0
    if module.best_state is not None:
        model.load_state_dict(module.best_state)
    metrics = {"best_epoch": module.best_epoch, "train_seconds": train_seconds, "steps": int(trainer.global_step),
               "n_parameters": sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())}
    sets = dict(test_sets or {})
    if valid_ds is not None and len(valid_ds):
        sets = {"valid": valid_ds, **sets}
    if trainer.is_global_zero:
        for name, ds in sets.items():
            logits, labels = predict_logits(model, ds, cfg.validation_batch_size)
            metrics[name] = classification_metrics(logits, labels)
        if output_dir is not None:
            atomic_write_text(os.path.join(output_dir, "metrics.json"), json.dumps(metrics, indent=2) + "\n")
            atomic_write_text(os.path.join(output_dir, "history.tsv"), history_tsv(module.history))
            save_classifier(model, os.path.join(output_dir, "classifier"), meta or {})
    return FinetuneResult(model, list(module.history), module.best_epoch, metrics, output_dir)
