"""The config file of ``strandwise fit`` / ``evaluate`` / ``predict`` / ``quickstart``.

One dataclass per section, each the single home of its defaults:

* ``data`` — :class:`strandwise.data.ProfileDataConfig` (genome, signals, peaks, splits, windows);
* ``model`` — :class:`ModelConfig` (architecture; signal groups and controls come from ``data``);
* ``train`` — :class:`strandwise.train.TrainConfig` (recipe; ``train.optimizer`` nested);
* ``evaluate`` — :class:`EvaluateConfig`.

Relative data paths are resolved against the config file's folder; ``output_dir`` against the
current directory. The resolved config is written next to the outputs as ``NAME.config.json``.
"""

from __future__ import annotations

import dataclasses
import os

from strandwise._config import ConfigError, dump_config, from_dict, read_config
from strandwise.data.config import ProfileDataConfig
from strandwise.models.cherimoya import PRESETS, Cherimoya
from strandwise.train.module import TrainConfig

__all__ = ["ModelConfig", "EvaluateConfig", "FitConfig", "load_fit_config", "build_model"]


@dataclasses.dataclass
class ModelConfig:
    """Architecture of the Cherimoya to train (``None`` = the preset's value).

    ``trimming`` defaults to ``(in_window − out_window) // 2`` so the output covers
    ``data.out_window``; ``signal_groups`` and ``n_control_tracks`` follow the data section.
    """

    preset: str = "description"
    n_filters: int | None = None
    n_layers: int = 9
    expansion: int = 2
    residual_scale: float = 0.15
    profile_kernel_size: int | None = None
    trimming: int | None = None

    def validate(self) -> None:
        if self.preset not in PRESETS:
            raise ConfigError(f"model.preset must be one of {sorted(PRESETS)}; got {self.preset!r}")
        if isinstance(self.n_layers, bool) or not isinstance(self.n_layers, int) or self.n_layers < 1:
            raise ConfigError(f"model.n_layers must be a positive int; got {self.n_layers!r}")


@dataclasses.dataclass
class EvaluateConfig:
    """Settings of ``evaluate`` and ``predict``."""

    batch_size: int = 256
    reverse_complement_average: bool = False
    n_plot_loci: int = 6
    device: str = "auto"

    def validate(self) -> None:
        if self.batch_size < 1:
            raise ConfigError("evaluate.batch_size must be >= 1")


@dataclasses.dataclass
class FitConfig:
    """A whole profile-model run."""

    name: str = "cherimoya"
    output_dir: str | None = None
    data: ProfileDataConfig = dataclasses.field(default_factory=ProfileDataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = dataclasses.field(default_factory=EvaluateConfig)

    def validate(self) -> None:
        if not self.name or any(c in self.name for c in "/\\"):
            raise ConfigError(f"name must be a non-empty file-name stem; got {self.name!r}")
        trimming = self.trimming
        if trimming < 0 or self.data.in_window - 2 * trimming <= 0:
            raise ConfigError(f"model.trimming={trimming} leaves no output for in_window={self.data.in_window}")
        if self.data.in_window - 2 * trimming != self.data.out_window:
            raise ConfigError(
                f"model.trimming={trimming} maps in_window={self.data.in_window} to "
                f"{self.data.in_window - 2 * trimming} outputs, but data.out_window={self.data.out_window}"
            )

    @property
    def trimming(self) -> int:
        if self.model.trimming is not None:
            return int(self.model.trimming)
        return (self.data.in_window - self.data.out_window) // 2

    @property
    def out_dir(self) -> str:
        return os.path.abspath(self.output_dir or self.name)

    def path(self, suffix: str) -> str:
        """``output_dir/NAME{suffix}``."""
        return os.path.join(self.out_dir, f"{self.name}{suffix}")


def load_fit_config(source, overrides: dict | None = None) -> FitConfig:
    """Read a JSON/YAML config (or take a dict), merge ``overrides`` and validate.

    Raises
    ------
    ConfigError
        Unknown keys (closest valid key suggested), bad values, disagreeing sections.
    """
    raw, base = read_config(source, overrides)
    cfg = from_dict(FitConfig, raw, where="config")
    cfg.data = cfg.data.resolve_paths(base)
    return cfg


def build_model(cfg: FitConfig) -> Cherimoya:
    """The Cherimoya the config describes (groups and controls from the data section)."""
    _, groups = cfg.data.signal_spec
    controls, _ = cfg.data.control_spec
    m = cfg.model
    return Cherimoya(
        n_filters=m.n_filters,
        n_layers=m.n_layers,
        signal_groups=groups,
        n_control_tracks=len(controls),
        expansion=m.expansion,
        residual_scale=m.residual_scale,
        name=cfg.name,
        trimming=cfg.trimming,
        random_state=cfg.train.random_state,
        profile_kernel_size=m.profile_kernel_size,
        preset=m.preset,
    )


def write_resolved_config(cfg: FitConfig) -> str:
    path = cfg.path(".config.json")
    os.makedirs(cfg.out_dir, exist_ok=True)
    dump_config(cfg, path)
    return path
