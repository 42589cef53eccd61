"""strandwise: deep learning on DNA — Cherimoya profile models and Caduceus DNA language models."""

from strandwise._version import __version__
from strandwise.io import one_hot_encode, string_reverse_complement
from strandwise.kernels import (
    FusedDilatedConvNormFunc,
    _cheri_conv_norm_cpu,
    fused_dilated_conv_norm,
)
from strandwise.models import CheriBlock, Cherimoya
from strandwise.interpret import ExpectedCountsWrapper, LogCountWrapper, ProfileWrapper, ControlWrapper

__all__ = [
    "__version__",
    "CheriBlock",
    "Cherimoya",
    "ControlWrapper",
    "ExpectedCountsWrapper",
    "LogCountWrapper",
    "ProfileWrapper",
    "FusedDilatedConvNormFunc",
    "_cheri_conv_norm_cpu",
    "fused_dilated_conv_norm",
    "one_hot_encode",
    "string_reverse_complement",
]
