"""Attribution for sequence classifiers that take token ids (the CNN baseline, Caduceus).

The attribution functions (:func:`~strandwise.interpret.deep_lift_shap`,
:func:`~strandwise.interpret.saturation_mutagenesis`) explain a model of one-hot DNA
``X (N, 4, L)``. The fine-tuned classifiers of :mod:`strandwise.train.caduceus_module` read token
ids ``(B, L)`` instead, and an integer lookup has no gradient. :class:`ClassifierWrapper` replaces
the lookup by the same map written on the one-hot, so the result is a differentiable function of
``X`` that equals the classifier on every one-hot input:

* :class:`~strandwise.train.caduceus_module.CNNBaseline` — its first operation *is* the one-hot of
  the ids (non-base tokens all-zero), so ``X`` enters the conv stack directly. Its layers are
  convolutions, eval-mode BatchNorm (an affine map: linear for DeepLIFT), ReLUs (rescale rule),
  max-pools (tangermeme's rule routes the change of each maximum to the winning positions) and
  linear layers, each ReLU its own module: every step's multiplier satisfies summation-to-delta,
  so the attributions sum to ``f(X) − f(reference)`` for every reference (checked in the tests).
  The wrapper is pinned to eval mode: BatchNorm in training mode would mix examples and
  references through batch statistics.
* :class:`~strandwise.train.caduceus_module.CaduceusClassifier` — ``Emb(ids)`` at a position with
  one-hot column ``x`` is ``xᵀ·E[A,C,G,T] + (1 − Σx)·E[N]`` (an all-zero column is an N), and for
  RC-equivariant (PS) embeddings the reverse-complement half is the same map on the complemented
  rows, channel-flipped. Ph models with conjoining score ``flip(X)`` (the reverse complement in
  A, C, G, T order) as the second strand. The scan, gates and norms of Mamba have no exact DeepLIFT
  rule (products of two input-dependent tensors), so :func:`attribute_classifier` refuses
  ``deep_lift_shap`` for Caduceus and offers ISM, which is exact for any model.

The explained score is the class-``k`` logit (``output="logit"``) or the logit minus the mean of
the other logits (``output="logit_diff"``; the log-odds ``logit_1 − logit_0`` for a binary task).
Both are linear in the logits, so completeness carries over to them.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ClassifierWrapper", "attribute_classifier"]

_OUTPUTS = ("logit", "logit_diff")


class ClassifierWrapper(nn.Module):
    """One-hot ``X (N, 4, L)`` → ``(N, 1)`` score of a token-id classifier (see module docstring).

    Parameters
    ----------
    model : CNNBaseline or CaduceusClassifier
        Put in eval mode (BatchNorm must use its running statistics; dropout off).
    target : int
        Class to explain.
    output : {"logit", "logit_diff"}
        The class logit, or the logit minus the mean of the other classes' logits.

    Raises
    ------
    TypeError
        For any other model type.
    ValueError
        Bad ``target`` / ``output``.
    """

    def __init__(self, model: nn.Module, target: int = 1, output: str = "logit_diff"):
        super().__init__()
        from strandwise.train.caduceus_module import CaduceusClassifier, CNNBaseline

        if not isinstance(model, (CNNBaseline, CaduceusClassifier)):
            raise TypeError(
                f"ClassifierWrapper supports CNNBaseline and CaduceusClassifier; got {type(model).__name__}. "
                "Wrap other models so that they take one-hot (N, 4, L) and use deep_lift_shap / "
                "saturation_mutagenesis directly.")
        if output not in _OUTPUTS:
            raise ValueError(f"output must be one of {_OUTPUTS}; got {output!r}")
        k = getattr(model, "num_classes", None)
        if isinstance(target, bool) or not isinstance(target, int) or k is None or not 0 <= target < k:
            raise ValueError(f"target must be a class index in [0, {k}); got {target!r}")
        if output == "logit_diff" and k < 2:
            raise ValueError("output='logit_diff' needs at least two classes")
        self.model, self.target, self.output, self.num_classes = model.eval(), int(target), output, int(k)
        if isinstance(model, CNNBaseline):
            self.kind = "cnn"
            self.max_length = model.max_length
        else:
            self.kind = "caduceus"
        self.eval()

    def train(self, mode: bool = True):
        """Always eval: BatchNorm must use its running statistics (an affine map, so DeepLIFT's
        linear treatment is exact) and dropout must be off, whatever a caller restores after a
        pass (tangermeme puts a model back in training mode if it found it there)."""
        return super().train(False)

    # ------------------------------------------------------------------ Caduceus embeddings
    def _embed(self, X: torch.Tensor) -> torch.Tensor:
        """``(N, 4, L)`` one-hot → the embedding ``(N, L, d or 2d)`` the ids would get."""
        from strandwise.io.tokenizer import A_ID, N_ID
        from strandwise.models.caduceus import RCPSEmbedding

        emb = self.model.backbone.caduceus.backbone.embeddings.word_embeddings
        W = emb.weight
        x = X.transpose(1, 2).to(W.dtype)  # (N, L, 4)
        missing = 1.0 - x.sum(-1, keepdim=True)  # 1 at all-zero (N) columns
        ids = torch.arange(A_ID, A_ID + 4, device=W.device)
        out = x @ W[ids] + missing * W[N_ID]
        if isinstance(emb, RCPSEmbedding):
            cm = emb.complement_map
            rc = (x @ W[cm[ids]] + missing * W[cm[N_ID]]).flip(-1)
            out = torch.cat([out, rc], dim=-1)
        return out

    def _caduceus_logits(self, X: torch.Tensor) -> torch.Tensor:
        from strandwise.models.caduceus import pool_hidden, rc_half

        clf = self.model
        bb = clf.backbone
        cad = bb.caduceus
        mask = torch.ones(X.shape[0], X.shape[-1], dtype=torch.bool, device=X.device)
        if bb.config.rcps:
            h = cad(inputs_embeds=self._embed(X)).last_hidden_state
            hs = [h[..., : bb.config.d_model], rc_half(h, aligned=bb.aligned)]
        else:
            h = cad(inputs_embeds=self._embed(X)).last_hidden_state
            conjoin = bb.conjoin_train or (bb.conjoin_test and not bb.training)
            hs = [h]
            if conjoin:
                # reverse complement in A, C, G, T order = flip channels and length
                h_rc = cad(inputs_embeds=self._embed(X.flip(1, 2))).last_hidden_state
                hs.append(h_rc.flip(-2) if bb.aligned else h_rc)
        logits = [clf.head(pool_hidden(h, mask, clf.pooling)) for h in hs]
        return torch.stack(logits).mean(0)

    def logits(self, X: torch.Tensor) -> torch.Tensor:
        """All class logits ``(N, K)`` of one-hot ``X (N, 4, L)``."""
        if not isinstance(X, torch.Tensor) or X.ndim != 3 or X.shape[1] != 4:
            raise ValueError(f"X must be one-hot DNA of shape (N, 4, L); got {getattr(X, 'shape', type(X).__name__)}")
        if self.kind == "cnn":
            L = X.shape[-1]
            if L > self.max_length:
                raise ValueError(f"sequences of {L} bp are longer than the CNN's max_length {self.max_length}")
            if L < self.max_length:  # the tokenizer left-pads with [PAD], whose one-hot is all-zero
                X = torch.nn.functional.pad(X, (self.max_length - L, 0))
            m = self.model
            return m.classifier(m.features(X.to(next(m.parameters()).dtype)))
        return self._caduceus_logits(X)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        y = self.logits(X)
        k = self.target
        if self.output == "logit":
            return y[:, k : k + 1]
        rest = torch.cat([y[:, :k], y[:, k + 1 :]], dim=1).mean(dim=1, keepdim=True)
        return y[:, k : k + 1] - rest


_ALGORITHMS = ("deep_lift_shap", "saturation_mutagenesis")


def attribute_classifier(
    model: nn.Module,
    X: torch.Tensor,
    target: int = 1,
    output: str = "logit_diff",
    algorithm: str = "deep_lift_shap",
    n_shuffles: int = 20,
    references: torch.Tensor | None = None,
    random_state: int = 0,
    batch_size: int = 128,
    device=None,
    progress: bool = False,
) -> torch.Tensor:
    """Hypothetical attributions ``(N, 4, L)`` of a token-id classifier's class-``target`` score.

    Parameters
    ----------
    model : CNNBaseline or CaduceusClassifier
        E.g. from :func:`strandwise.train.caduceus_module.load_classifier`.
    X : torch.Tensor, shape (N, 4, L)
        One-hot sequences (for the CNN, ``L ≤ max_length``; shorter ones are left-padded as the
        tokenizer does).
    target, output
        As in :class:`ClassifierWrapper`.
    algorithm : {"deep_lift_shap", "saturation_mutagenesis"}
        DeepLIFT/SHAP (CNN only; dinucleotide-shuffled references) or ISM (any model; mean-centred
        over the four bases at each position).
    n_shuffles, references, random_state, batch_size, device, progress
        As in :func:`~strandwise.interpret.deep_lift_shap` / :func:`~strandwise.interpret.saturation_mutagenesis`.

    Returns
    -------
    torch.Tensor, shape (N, 4, L), float32 on CPU
        Multiply by ``X`` for contributions (``importance_scores``, seqlets, MoDISco take this form).

    Raises
    ------
    ValueError
        ``deep_lift_shap`` on a Caduceus classifier, or an unknown algorithm.
    """
    from strandwise.interpret.attribution import deep_lift_shap, saturation_mutagenesis

    if algorithm not in _ALGORITHMS:
        raise ValueError(f"algorithm must be one of {_ALGORITHMS}; got {algorithm!r}")
    wrapped = ClassifierWrapper(model, target=target, output=output)
    if algorithm == "deep_lift_shap":
        if wrapped.kind != "cnn":
            raise ValueError(
                "deep_lift_shap has no exact rules for Caduceus (Mamba's selective scan and gates multiply "
                "input-dependent tensors, so attributions would not sum to the output change); use "
                "algorithm='saturation_mutagenesis'")
        return deep_lift_shap(wrapped, X, n_shuffles=n_shuffles, references=references, random_state=random_state,
                              batch_size=batch_size, device=device, progress=progress).float().cpu()
    return saturation_mutagenesis(wrapped, X, batch_size=batch_size, device=device, progress=progress).float().cpu()
