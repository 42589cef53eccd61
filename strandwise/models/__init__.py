"""Models (``nn.Module`` only) and their checkpoint formats."""

from strandwise.models.cherimoya import (
    PRESETS,
    CheckpointFormatError,
    CheriBlock,
    Cherimoya,
    channel_permutation_from_groups,
    default_trimming,
    validate_signal_groups,
)

__all__ = [
    "PRESETS",
    "CheckpointFormatError",
    "CheriBlock",
    "Cherimoya",
    "channel_permutation_from_groups",
    "default_trimming",
    "validate_signal_groups",
]
