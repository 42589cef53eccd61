"""strandwise: deep learning on DNA — Cherimoya profile models and Caduceus DNA language models."""

from strandwise._version import __version__
from strandwise.io import one_hot_encode, string_reverse_complement
from strandwise.io.tokenizer import CaduceusTokenizer, CharacterTokenizer
from strandwise.kernels.selective_scan import selective_scan_fn
from strandwise.kernels import (
    FusedDilatedConvNormFunc,
    _cheri_conv_norm_cpu,
    fused_dilated_conv_norm,
)
from strandwise.models import CheriBlock, Cherimoya
from strandwise.interpret import ExpectedCountsWrapper, LogCountWrapper, ProfileWrapper, ControlWrapper
from strandwise.models.caduceus import (
    BiMambaWrapper,
    Caduceus,
    CaduceusConfig,
    CaduceusForMaskedLM,
    CaduceusForSequenceClassification,
    CaduceusProjector,
    DNAEmbeddingModelCaduceus,
    RCPSAddNormWrapper,
    RCPSEmbedding,
    RCPSLMHead,
    RCPSMambaBlock,
    RCPSWrapper,
    load_caduceus,
)
from strandwise.models.mamba import Mamba

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
    "CaduceusTokenizer",
    "CharacterTokenizer",
    "selective_scan_fn",
    "BiMambaWrapper",
    "Caduceus",
    "CaduceusConfig",
    "CaduceusForMaskedLM",
    "CaduceusForSequenceClassification",
    "CaduceusProjector",
    "DNAEmbeddingModelCaduceus",
    "RCPSAddNormWrapper",
    "RCPSEmbedding",
    "RCPSLMHead",
    "RCPSMambaBlock",
    "RCPSWrapper",
    "load_caduceus",
    "Mamba",
]
