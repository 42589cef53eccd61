"""The data section of a Cherimoya profile-model config: one dataclass, one source of defaults.

Build it from a user's mapping with :func:`ProfileDataConfig.from_dict` (unknown keys are rejected
with the closest valid key suggested); the defaults below are upstream Cherimoya's (spec §4.6,
§4.9, §4.10).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from strandwise._config import ConfigError, from_dict
from strandwise.data.splits import (
    HG38_TEST_CHROMS,
    HG38_TRAINING_CHROMS,
    HG38_VALIDATION_CHROMS,
    canonical_split,
    check_splits_disjoint,
)

__all__ = ["ProfileDataConfig", "check_signal_groups"]


@dataclasses.dataclass
class ProfileDataConfig:
    """Inputs and extraction settings for profile (Cherimoya) training and evaluation.

    Attributes
    ----------
    sequences : str
        Genome FASTA (plain or bgzipped with ``.fai``/``.gzi``).
    signals : str or list
        bigWig tracks in the grammar of spec §5.4 (``["a.bw", ["b.+.bw", "b.-.bw"]]`` → groups
        ``[1, 2]``).
    controls : str or list, optional
        Control bigWigs, same grammar (their groups are the ``control_groups``).
    loci : str or list of str
        Peak files (BED / narrowPeak); several files are interleaved row-wise.
    negatives : str or list of str, optional
        Background loci (BED), typically from ``strandwise negatives``.
    exclusion_lists : list of str, optional
        BED files; loci whose window touches them are dropped (100-bp bins).
    training_chroms, validation_chroms, test_chroms : list of str
        Disjoint chromosome lists (upstream hg38 defaults).
    in_window, out_window : int
        Model input / output lengths (2114 / 1000).
    max_jitter : int
        Peaks are extracted ``2·max_jitter`` wider; the sampler picks an offset in ``[0, 2mj]``.
    reverse_complement : bool
        RC augmentation with probability 0.5 per training example.
    negative_ratio : float
        Negatives per peak in each training epoch (``int(n_peaks·ratio)`` slots).
    summits : bool
        Centre peaks at narrowPeak column 10 (summit offset) where present.
    min_counts, max_counts : float, optional
        Drop peaks whose total signal, per group over the wide output window, is below
        ``min_counts`` / above ``max_counts`` in any group (applied to peaks of every split).
    outlier_threshold : float, optional
        Training peaks above ``outlier_threshold × quantile(outlier_quantile)`` of a group's totals
        are dropped (§4.10); ``None`` disables.
    outlier_quantile : float
    random_state : int, optional
        Seeds the sampler (order, jitter, RC). ``None`` draws one at construction and records it.
    signal_groups, control_groups : list of int, optional
        Only needed for in-memory tracks; with files they must agree with the grammar.
    """

    sequences: str | None = None
    signals: Any = None
    controls: Any = None
    loci: Any = None
    negatives: Any = None
    exclusion_lists: Any = None
    training_chroms: list = dataclasses.field(default_factory=lambda: list(HG38_TRAINING_CHROMS))
    validation_chroms: list = dataclasses.field(default_factory=lambda: list(HG38_VALIDATION_CHROMS))
    test_chroms: list = dataclasses.field(default_factory=lambda: list(HG38_TEST_CHROMS))
    in_window: int = 2114
    out_window: int = 1000
    max_jitter: int = 500
    reverse_complement: bool = True
    negative_ratio: float = 0.25
    summits: bool = False
    min_counts: float | None = None
    max_counts: float | None = None
    outlier_threshold: float | None = 1.2
    outlier_quantile: float = 0.99
    random_state: int | None = 0
    signal_groups: list | None = None
    control_groups: list | None = None

    # ------------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data, where: str = "data") -> "ProfileDataConfig":
        """Build and validate from a mapping (unknown keys → ``ConfigError`` with a suggestion)."""
        return from_dict(cls, data, where=where)

    def validate(self) -> None:
        """Check types, ranges, disjoint splits and the signal grammar (no file access).

        Raises
        ------
        ConfigError
            With a message naming the offending key.
        """
        from strandwise.io.bigwig import normalize_signal_groups

        for key in ("sequences", "signals", "loci"):
            if getattr(self, key) in (None, "", []):
                raise ConfigError(f"data.{key} is required")
        for key in ("in_window", "out_window"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ConfigError(f"data.{key} must be a positive int; got {v!r}")
        if self.out_window > self.in_window:
            raise ConfigError(
                f"data.out_window ({self.out_window}) cannot exceed data.in_window ({self.in_window})")
        if isinstance(self.max_jitter, bool) or not isinstance(self.max_jitter, int) \
                or self.max_jitter < 0:
            raise ConfigError(f"data.max_jitter must be an int >= 0; got {self.max_jitter!r}")
        if not isinstance(self.negative_ratio, (int, float)) or self.negative_ratio < 0:
            raise ConfigError(f"data.negative_ratio must be >= 0; got {self.negative_ratio!r}")
        if self.negative_ratio > 0 and not self.negatives:
            raise ConfigError(
                "data.negative_ratio > 0 needs data.negatives (make them with `strandwise "
                "negatives`), or set negative_ratio to 0")
        if self.outlier_threshold is not None and self.outlier_threshold <= 0:
            raise ConfigError("data.outlier_threshold must be > 0 or null")
        if not 0 < self.outlier_quantile <= 1:
            raise ConfigError("data.outlier_quantile must be in (0, 1]")
        if (self.min_counts is not None and self.max_counts is not None
                and self.min_counts > self.max_counts):
            raise ConfigError("data.min_counts is larger than data.max_counts")
        if self.random_state is not None and (isinstance(self.random_state, bool)
                                              or not isinstance(self.random_state, int)):
            raise ConfigError(f"data.random_state must be an int or null; got {self.random_state!r}")
        try:
            check_splits_disjoint(self.training_chroms, self.validation_chroms, self.test_chroms)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"data: {exc}") from None
        for key, groups_key in (("signals", "signal_groups"), ("controls", "control_groups")):
            try:
                _, groups = normalize_signal_groups(getattr(self, key))
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"data.{key}: {exc}") from None
            explicit = getattr(self, groups_key)
            if explicit is not None:
                _check_groups_agree(groups, explicit, f"data.{key}", f"data.{groups_key}")

    # ------------------------------------------------------------------------------------------
    @property
    def signal_spec(self) -> tuple[list, list[int]]:
        """``(tracks, signal_groups)`` from :attr:`signals`."""
        from strandwise.io.bigwig import normalize_signal_groups

        return normalize_signal_groups(self.signals)

    @property
    def control_spec(self) -> tuple[list, list[int]]:
        from strandwise.io.bigwig import normalize_signal_groups

        return normalize_signal_groups(self.controls)

    def chroms(self, split: str) -> list[str]:
        """Chromosomes of ``split`` ('train'/'training', 'valid'/'validation', 'test')."""
        s = canonical_split(split)
        return list({"train": self.training_chroms, "valid": self.validation_chroms,
                     "test": self.test_chroms}[s])

    def resolve_paths(self, base_dir: str | os.PathLike) -> "ProfileDataConfig":
        """A copy with every relative path made relative to ``base_dir`` (the config's folder)."""
        base = os.fspath(base_dir)

        def fix(v):
            if v is None:
                return None
            if isinstance(v, (str, os.PathLike)):
                p = os.fspath(v)
                return p if os.path.isabs(p) else os.path.normpath(os.path.join(base, p))
            if isinstance(v, (list, tuple)):
                return [fix(x) for x in v]
            return v  # in-memory tracks

        return dataclasses.replace(
            self, sequences=fix(self.sequences), signals=fix(self.signals),
            controls=fix(self.controls), loci=fix(self.loci), negatives=fix(self.negatives),
            exclusion_lists=fix(self.exclusion_lists))


def _check_groups_agree(from_files, explicit, files_label, groups_label) -> None:
    from strandwise.models.cherimoya import validate_signal_groups

    try:
        explicit = validate_signal_groups(explicit) if explicit else []
    except ValueError as exc:
        raise ConfigError(f"{groups_label}: {exc}") from None
    if list(from_files) != list(explicit):
        raise ConfigError(
            f"{files_label} and {groups_label} disagree: the tracks give groups {list(from_files)} "
            f"({sum(from_files)} channels) but {groups_label} is {list(explicit)} "
            f"({sum(explicit)} channels)")


def check_signal_groups(cfg: ProfileDataConfig, signal_groups, n_control_tracks: int | None = None,
                        where: str = "model.signal_groups") -> None:
    """Check a model's ``signal_groups`` (and ``n_control_tracks``) against the data section.

    The fit command calls this before building the model so a mismatch is one clear line.

    Raises
    ------
    ConfigError
        ``data.signals and model.signal_groups disagree: ...``.
    """
    _, groups = cfg.signal_spec
    if cfg.signal_groups is not None:
        groups = list(cfg.signal_groups)
    _check_groups_agree(groups, signal_groups, "data.signals", where)
    if n_control_tracks is not None:
        n_ctl = sum(cfg.control_spec[1]) if cfg.controls else 0
        if int(n_control_tracks) != n_ctl:
            raise ConfigError(
                f"data.controls gives {n_ctl} control track(s) but the model expects "
                f"n_control_tracks={n_control_tracks}")
