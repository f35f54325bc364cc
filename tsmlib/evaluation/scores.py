"""Score spaces: what "the model's confidence" means for Average Drop, Increase in Confidence, Average Gain
and the deletion/insertion curves.

A score object has a ``name`` (recorded with every result), a :meth:`prepare` step run once on the full
images (it fixes the target: the predicted class, a given label, or the reference embedding), and is
called on images with that context to give one score per image:

>>> score = ClassScore(model, space="softmax")          # doctest: +SKIP
>>> ctx = score.prepare(x)     # targets = argmax of model(x)  # doctest: +SKIP
>>> Y = score(x, ctx); O = score(masked_input(x, S), ctx)  # doctest: +SKIP

* :class:`ClassScore` ``"softmax"`` (the protocol's default) or ``"logit"``: the target class's probability
  or logit. For a self-supervised backbone with a linear probe, :func:`probe_score` chains them.
* :class:`EmbeddingSimilarity` ``"cosine"``: label-free; cosine similarity between the embedding of the
  scored image and that of the full image (``Y`` is then 1 and Average Drop is the "similarity drop").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F


def _forward(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = module(x)
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"the model must return (B, K) logits or (B, D) embeddings, got {shape}")
    return out


@dataclass
class ClassScore:
    """Score of a target class from a classifier's logits.

    Parameters
    ----------
    model : nn.Module
        ``(B, 3, S, S)`` images in [0, 1] -> ``(B, K)`` logits.
    space : {"softmax", "logit"}
        Probability of the target class (default) or its raw logit.
    prefix : str
        Prepended to the recorded score-space name (``"probe-"`` for a linear probe).
    """

    model: nn.Module
    space: Literal["softmax", "logit"] = "softmax"
    prefix: str = ""

    def __post_init__(self):
        if self.space not in ("softmax", "logit"):
            raise ValueError(f"space must be 'softmax' or 'logit', got {self.space!r}")

    @property
    def name(self) -> str:
        return self.prefix + self.space

    def prepare(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Targets ``(B,)``: ``labels`` if given, else the class predicted on ``x``."""
        if labels is not None:
            return torch.as_tensor(labels, dtype=torch.long, device=x.device).reshape(-1)
        return _forward(self.model, x).argmax(-1)

    def __call__(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Scores ``(B,)`` of ``targets`` (LongTensor ``(B,)``) on images ``x`` ``(B, 3, S, S)``."""
        return self.from_logits(_forward(self.model, x), targets)

    def from_logits(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Scores ``(B,)`` of ``targets`` from logits ``(B, K)`` already computed by ``self.model``
        (the runner reuses the logits of the forward pass that captured the activations)."""
        targets = targets.to(logits.device).reshape(-1, 1)
        if self.space == "softmax":
            return logits.float().softmax(-1).gather(1, targets)[:, 0]
        return logits.gather(1, targets)[:, 0]


def probe_score(backbone: nn.Module, probe: nn.Module, space: Literal["softmax", "logit"] = "softmax") -> ClassScore:
    """Class scores of a linear probe on a frozen (self-supervised) backbone: ``probe(backbone(x))``.

    Recorded as score space ``"probe-softmax"`` (or ``"probe-logit"``). If the model given to the runner
    is already backbone + probe, ``score="softmax"`` is the same computation.
    """
    return ClassScore(nn.Sequential(backbone, probe).eval(), space, prefix="probe-")


@dataclass
class EmbeddingSimilarity:
    """Label-free score: cosine similarity between ``embedder(x_scored)`` and ``embedder(x_full)``.

    Parameters
    ----------
    embedder : nn.Module
        ``(B, 3, S, S)`` images in [0, 1] -> ``(B, D)`` embeddings (or feature maps, flattened).
    """

    embedder: nn.Module

    name = "cosine"

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = self.embedder(x)
        if isinstance(out, (tuple, list)):
            out = out[0]
        return out.flatten(1).double()

    def prepare(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Reference embeddings ``(B, D)`` of the full images (``labels`` are ignored)."""
        return self._embed(x)

    def __call__(self, x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """Cosine similarities ``(B,)`` in [-1, 1]; a zero embedding gives similarity 0."""
        return F.cosine_similarity(self._embed(x), reference.to(x.device), dim=1, eps=1e-12)


def make_score(score, model: nn.Module, embedder: nn.Module | None = None):
    """A score object from a name: ``"softmax"``, ``"logit"``, ``"cosine"`` (``embedder`` or else ``model``),
    or an object with ``name``, ``prepare`` and ``__call__`` returned unchanged."""
    if isinstance(score, str):
        if score in ("softmax", "logit"):
            return ClassScore(model, score)
        if score == "cosine":
            return EmbeddingSimilarity(embedder if embedder is not None else model)
        raise ValueError(f"unknown score space {score!r}: use 'softmax', 'logit', 'cosine' or a score object")
    for attr in ("name", "prepare", "__call__"):
        if not hasattr(score, attr):
            raise TypeError(f"a score object needs .name, .prepare(x, labels) and __call__(x, context); missing {attr}")
    return score


def index_context(context: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows ``index`` of a per-image context (targets ``(B,)`` or reference embeddings ``(B, D)``)."""
    return context[index.to(context.device)]
