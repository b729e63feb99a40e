"""Training on (fixed) collections: a bi-encoder retriever (InfoNCE over in-batch and hard
negatives, static or re-mined while training: :mod:`trueneg.train.dynamic`) and a cross-encoder
reranker. Needs the ``train`` extra (torch, transformers)."""

from trueneg.models import Reranker
from trueneg.train._loop import Schedule
from trueneg.train.dynamic import DynamicConfig
from trueneg.train.reranker import RerankerConfig, train_reranker
from trueneg.train.retriever import RetrieverConfig, train_retriever

__all__ = [
    "DynamicConfig",
    "Reranker",
    "RerankerConfig",
    "RetrieverConfig",
    "Schedule",
    "train_reranker",
    "train_retriever",
]
