"""Learning to rank: the order of the union of candidates.

Retrieval is learned by the bandit (:mod:`ltrr.bandit`); the order of what it retrieved is learned
here, from the same event log. A :class:`~ltrr.ranking.base.Ranker` orders the union;
:mod:`ltrr.ranking.rrf` is the fallback, :mod:`ltrr.ranking.catboost` the learned model, and
:mod:`ltrr.ranking.features` the feature schema both serving and training read.
"""
