"""Training: losses, optimizer routing (Muon + AdamW), schedules, EMA, Lightning module, fit API.

Lightning is imported only when the module or ``fit`` is used, so ``strandwise.train.losses`` and
friends work without it.
"""

from strandwise.train.ema import EMA
from strandwise.train.losses import KendallGalWeights, _mixture_loss, count_targets, mixture_loss, mnll
from strandwise.train.optim import (
    OptimizerConfig,
    build_optimizers,
    build_schedulers,
    route_parameters,
    schedule_steps,
    warmup_cosine_lambda,
)

__all__ = [
    "EMA",
    "KendallGalWeights",
    "OptimizerConfig",
    "TrainConfig",
    "_mixture_loss",
    "build_optimizers",
    "build_schedulers",
    "count_targets",
    "fit",
    "mixture_loss",
    "mnll",
    "route_parameters",
    "schedule_steps",
    "warmup_cosine_lambda",
]


def __getattr__(name):
    if name in ("TrainConfig", "CherimoyaModule"):
        from strandwise.train import module

        return getattr(module, name)
    if name in ("fit", "FitResult", "TensorProfileDataset"):
        from strandwise.train import api

        return getattr(api, name)
    raise AttributeError(f"module 'strandwise.train' has no attribute {name!r}")

# Caduceus training (Lightning imported on first use)
_CADUCEUS_TRAIN_NAMES = (
    "CaduceusModelConfig", "CaduceusOptimConfig", "PretrainTrainConfig", "FinetuneTrainConfig",
    "CaduceusClassifier", "CNNBaseline", "MLMModule", "ClassifierModule", "caduceus_param_groups",
    "caduceus_lr_lambda", "build_mlm_model", "build_classifier", "save_classifier", "load_classifier",
    "pretrain", "finetune", "predict_logits",
)
_getattr_before_caduceus = __getattr__


def __getattr__(name):  # noqa: F811 - extends the lazy loader above
    if name in _CADUCEUS_TRAIN_NAMES:
        from strandwise.train import caduceus_module

        return getattr(caduceus_module, name)
    return _getattr_before_caduceus(name)


__all__ += list(_CADUCEUS_TRAIN_NAMES)
