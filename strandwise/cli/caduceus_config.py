"""Config files of ``strandwise pretrain`` / ``finetune`` / ``embed`` / ``vep``.

Each command reads one JSON/YAML file into one dataclass below (unknown keys are rejected with
the closest valid key suggested); relative input paths are resolved against the config file's
folder, ``output_dir`` against the current directory; the resolved config is written to
``output_dir/NAME.config.json``.
"""

from __future__ import annotations

import dataclasses
import os

from strandwise._config import ConfigError, dump_config, from_dict, read_config
from strandwise.train.caduceus_module import CaduceusModelConfig, FinetuneTrainConfig, PretrainTrainConfig

__all__ = [
    "MLMDataConfig", "PretrainConfig", "LabelledDataConfig", "FinetuneConfig", "EmbedConfig", "VEPConfig",
    "load_command_config", "write_resolved",
]


def _abs(base: str, p):
    if p is None:
        return None
    if isinstance(p, (list, tuple)):
        return [_abs(base, x) for x in p]
    p = os.path.expanduser(os.fspath(p))
    return p if os.path.isabs(p) else os.path.normpath(os.path.join(base, p))


@dataclasses.dataclass
class _Run:
    name: str = "caduceus"
    output_dir: str | None = None

    def _validate_name(self):
        if not self.name or any(c in self.name for c in "/\\"):
            raise ConfigError(f"name must be a non-empty file-name stem; got {self.name!r}")

    @property
    def out_dir(self) -> str:
        return os.path.abspath(self.output_dir or self.name)

    def path(self, suffix: str) -> str:
        return os.path.join(self.out_dir, f"{self.name}{suffix}")


@dataclasses.dataclass
class MLMDataConfig:
    """Pretraining windows (spec §6.1).

    ``fasta``: one FASTA or a list (plain, gzip or bgzip); ``bed``: optional intervals (a 4th
    column ``train``/``valid``/``test`` sets the split); otherwise chromosomes in ``valid_chroms`` /
    ``test_chroms`` are held out. ``window`` = L; ``stride`` defaults to L. ``rc_aug`` None = on for
    Ph, off for PS. ``max_train_windows`` subsamples (deterministically) for quick runs.
    """

    fasta: list | str | None = None
    bed: str | None = None
    window: int = 1024
    stride: int | None = None
    valid_chroms: list = dataclasses.field(default_factory=list)
    test_chroms: list = dataclasses.field(default_factory=list)
    chroms: list | None = None
    rc_aug: bool | None = None
    in_memory: bool | None = None
    mask_prob: float = 0.15

    def validate(self):
        if not self.fasta:
            raise ConfigError("data.fasta is required (a FASTA file or a list of them)")
        if self.window < 1:
            raise ConfigError("data.window must be >= 1")


@dataclasses.dataclass
class PretrainConfig(_Run):
    data: MLMDataConfig = dataclasses.field(default_factory=MLMDataConfig)
    model: CaduceusModelConfig = dataclasses.field(default_factory=CaduceusModelConfig)
    train: PretrainTrainConfig = dataclasses.field(default_factory=PretrainTrainConfig)

    def validate(self):
        self._validate_name()
        if self.model.kind != "caduceus":
            raise ConfigError("pretrain trains Caduceus models only (model.kind must be 'caduceus')")

    def resolve(self, base):
        self.data.fasta = _abs(base, self.data.fasta)
        self.data.bed = _abs(base, self.data.bed)
        self.model.pretrained = _abs(base, self.model.pretrained)


@dataclasses.dataclass
class LabelledDataConfig:
    """Labelled sequences for fine-tuning.

    Either files per split (``train``/``valid``/``test``: CSV/TSV, FASTA + ``*_labels``) or a
    ``root`` folder in the Genomic Benchmarks layout (``root/<split>/<class>/*.txt``, or the
    coordinate files ``root/<split>/<class>.csv.gz`` with ``genome``). Without ``valid``, a
    ``valid_fraction`` of the training set is held out with ``fold_seed`` (GB protocol: 10 %,
    seeds 1..5). ``kfold``: split ``train`` itself into k stratified folds and test on fold ``fold``
    (for the GB test-only datasets). ``max_length`` None = the longest training sequence.
    ``max_train`` / ``max_eval`` subsample (first n after a seeded shuffle) for quick runs.
    """

    train: str | None = None
    valid: str | None = None
    test: str | None = None
    train_labels: str | None = None
    valid_labels: str | None = None
    test_labels: str | None = None
    root: str | None = None
    genome: str | None = None
    format: str = "auto"
    valid_fraction: float = 0.1
    fold_seed: int = 1
    kfold: int | None = None
    fold: int = 0
    max_length: int | None = None
    max_train: int | None = None
    max_eval: int | None = None

    def validate(self):
        if not self.train and not self.root:
            raise ConfigError("data.train (a labelled file) or data.root (a Genomic Benchmarks folder) is required")
        if self.kfold is not None and not (0 <= self.fold < self.kfold):
            raise ConfigError(f"data.fold must be in [0, kfold={self.kfold})")


@dataclasses.dataclass
class FinetuneConfig(_Run):
    data: LabelledDataConfig = dataclasses.field(default_factory=LabelledDataConfig)
    model: CaduceusModelConfig = dataclasses.field(default_factory=CaduceusModelConfig)
    train: FinetuneTrainConfig = dataclasses.field(default_factory=FinetuneTrainConfig)

    def validate(self):
        self._validate_name()

    def resolve(self, base):
        d = self.data
        for k in ("train", "valid", "test", "train_labels", "valid_labels", "test_labels", "root", "genome"):
            setattr(d, k, _abs(base, getattr(d, k)))
        self.model.pretrained = _abs(base, self.model.pretrained)


@dataclasses.dataclass
class EmbedConfig(_Run):
    """Embeddings of FASTA records, BED intervals (+ ``genome``) or raw ``sequences``.

    ``output``: ``tokens`` [N, L, d] (PS: both strands averaged per position, aligned),
    ``tokens_strands`` [N, L, d, 2], ``pooled`` [N, d] (strand-averaged masked mean),
    ``pooled_strands`` [N, 2d] (mean | max, RC-invariant), ``projected`` [N, 512]
    (``CaduceusProjector`` over ``pooled_strands``; random unless ``projector_weights``).
    ``format``: ``safetensors`` or ``npz``. Sequences are left-padded to ``max_length`` (None = the
    longest input) and the padding mask is saved for token outputs.
    """

    model: CaduceusModelConfig = dataclasses.field(default_factory=CaduceusModelConfig)
    fasta: str | None = None
    bed: str | None = None
    genome: str | None = None
    sequences: list | None = None
    output: str = "pooled"
    format: str = "safetensors"
    batch_size: int = 32
    max_length: int | None = None
    projector_weights: str | None = None
    device: str = "auto"
    seed: int = 0

    def validate(self):
        self._validate_name()
        n_src = sum(x is not None for x in (self.fasta, self.bed, self.sequences))
        if n_src != 1:
            raise ConfigError("give exactly one input: fasta, bed (with genome) or sequences")
        if self.bed is not None and self.genome is None:
            raise ConfigError("bed intervals need a genome FASTA (genome)")
        if self.output not in ("tokens", "tokens_strands", "pooled", "pooled_strands", "projected"):
            raise ConfigError(f"output must be tokens, tokens_strands, pooled, pooled_strands or projected; got {self.output!r}")
        if self.format not in ("safetensors", "npz"):
            raise ConfigError(f"format must be safetensors or npz; got {self.format!r}")
        if self.batch_size < 1:
            raise ConfigError("batch_size must be >= 1")

    def resolve(self, base):
        for k in ("fasta", "bed", "genome", "projector_weights"):
            setattr(self, k, _abs(base, getattr(self, k)))
        self.model.pretrained = _abs(base, self.model.pretrained)


@dataclasses.dataclass
class VEPConfig(_Run):
    """Variant-effect embeddings (spec §7).

    ``variants``: VCF or TSV (``chrom pos ref alt`` + optional ``label``, ``split``, ``tissue``,
    ``distance_to_nearest_tss``); ``fasta``: the genome. ``length`` = model input (131,072 in the
    paper); ``window`` = averaging window (1,536 → K = 1,537 positions). ``on_ref_mismatch``:
    ``error`` (default) or ``skip`` (counted). Variants too close to a chromosome end are skipped
    and counted. ``evaluate``: fit the §7 SVM protocol when train and test splits with labels exist.
    """

    model: CaduceusModelConfig = dataclasses.field(default_factory=CaduceusModelConfig)
    variants: str | None = None
    fasta: str | None = None
    length: int = 131072
    window: int = 1536
    batch_size: int = 1
    on_ref_mismatch: str = "error"
    format: str = "safetensors"
    device: str = "auto"
    evaluate: bool = False
    svm_c: list = dataclasses.field(default_factory=lambda: [1.0, 5.0, 10.0])
    svm_seeds: list = dataclasses.field(default_factory=lambda: [1, 2, 3, 4, 5])
    svm_train_size: int = 5000
    seed: int = 0

    def validate(self):
        self._validate_name()
        if not self.variants or not self.fasta:
            raise ConfigError("variants (VCF/TSV) and fasta (genome) are required")
        if self.on_ref_mismatch not in ("error", "skip"):
            raise ConfigError(f"on_ref_mismatch must be 'error' or 'skip'; got {self.on_ref_mismatch!r}")
        if self.format not in ("safetensors", "npz", "pt"):
            raise ConfigError(f"format must be safetensors, npz or pt; got {self.format!r}")
        if self.length < 2 or self.window < 0:
            raise ConfigError("length must be >= 2 and window >= 0")

    def resolve(self, base):
        self.variants, self.fasta = _abs(base, self.variants), _abs(base, self.fasta)
        self.model.pretrained = _abs(base, self.model.pretrained)


def load_command_config(cls, source, overrides: dict | None = None):
    """Read a JSON/YAML file (or a dict), merge ``overrides`` section-wise, validate, resolve paths."""
    raw, base = read_config(source, overrides)
    cfg = from_dict(cls, raw, where="config")
    cfg.resolve(base)
    return cfg


def write_resolved(cfg) -> str:
    os.makedirs(cfg.out_dir, exist_ok=True)
    path = cfg.path(".config.json")
    dump_config(cfg, path)
    return path
