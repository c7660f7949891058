"""Training the learned ranker on logged searches, and judging it against RRF on the most recent ones.

One logged search is a :class:`Group`: the candidates it served (in served order), their feature rows
(:mod:`ltrr.ranking.features`), graded labels (:mod:`ltrr.ranking.labels`), the inverse-propensity
weight of each label, and the fallback's RRF score. :func:`train_ranker` fits a CatBoost ranking
model grouped by search; :func:`evaluate` scores any ranker's order with ranx; :func:`should_publish`
is the rule the trainer applies before a model replaces the served one.

Position bias
-------------
A click at position :math:`k` is only possible if the user examined position :math:`k`, which
happens with probability :math:`\\theta_k` (:mod:`ltrr.ranking.position_bias`). Under the
position-based model a click is :math:`c = E \\cdot R` with :math:`P(E) = \\theta_k`, so the
inverse-propensity scaled label :math:`\\tilde y = y / \\theta_k` has :math:`E[\\tilde y] = E[y \\mid
\\text{examined}]`: an unbiased estimate of the candidate's relevance wherever it was shown. ``weights``
carries :math:`1/\\theta_k` per candidate (1 for labels that need no correction), and every loss is
trained on the target

.. math::

    t_i = \\frac{y_i\\, w_i}{\\bar w_+}, \\qquad \\bar w_+ = \\text{mean of } w_i \\text{ over the rows with } y_i > 0,

the constant :math:`\\bar w_+` only keeping the targets on the scale of the grades (a common factor
changes neither loss's minimiser, only how it meets the fixed ``l2_leaf_reg``). Why the target
and not CatBoost's weights, per loss (measured on catboost 1.2.10):

* **YetiRank, YetiRankPairwise** warn "Pairwise losses don't support object weights" and do not
  apply them as such; ``pairs`` / ``pairs_weight`` are ignored (YetiRank draws its own pairs: the
  predictions are bit-identical with and without them). ``group_weight`` is applied, but it is one
  weight per search, so it cannot tell two clicks at different positions apart. YetiRank's pair
  weight (``Classic`` mode) is ``group_weight * 0.15 * decay^j * |t_a - t_b|`` for neighbours in
  a noisy sort, linear in the target difference; so with the scaled target a (clicked ``i``,
  unclicked ``j``) pair weighs :math:`w_i`, the propensity-weighted pairwise loss of Joachims et
  al. (2017), and for a search with one click it equals ``group_weight = w_i``.
* **QueryRMSE** accepts object weights, but weighting the squared error of a clicked row by
  :math:`w_i` leaves the unexamined non-clicks as full negatives (in expectation
  :math:`1 - \\theta_k r` of a negative instead of :math:`1 - r`): still biased. Regressing on
  :math:`t_i` instead is exactly the unbiased pointwise risk, since
  :math:`\\tfrac{c}{\\theta}(f-1)^2 + (1-\\tfrac{c}{\\theta}) f^2 = (f - \\tfrac{c}{\\theta})^2 + \\text{const}`
  (Saito et al., 2020).

Large weights (small :math:`\\theta_k`) raise the variance of all three; clipping them is the
examination model's business (:class:`ltrr.ranking.position_bias.Examination`), before they reach
a :class:`Group`.

Judging a model
---------------
The held-out labels are clicks too, collected under the order that was served. nDCG and MRR on
them favour that order: what it put low was seldom examined, so a ranker that promotes it is
charged for results that were merely unseen. In the seeded simulation of
``tests/unit/test_ranking_train.py`` click nDCG@10 ranks RRF above a model that is far better in
true nDCG@10, and an unweighted model above the weighted one. :func:`evaluate` therefore also
reports ``ips_dcg@k``, the inverse-propensity DCG, which is unbiased for the true DCG and there ranks
the model above RRF, as the truth does; :func:`should_publish` takes either as its ``metric``.

References
----------
Thorsten Joachims, Adith Swaminathan, Tobias Schnabel. "Unbiased Learning-to-Rank with Biased
Feedback.", WSDM 2017.
Yuta Saito, Suguru Yaginuma, Yuta Nishino, Hayato Sakata, Kazuhide Nakata. "Unbiased Recommender
Learning from Missing-Not-At-Random Implicit Feedback.", WSDM 2020.
Andrey Gulin, Igor Kuralenok, Dimitry Pavlov. "Winning the Transfer Learning Track of Yahoo!'s
Learning to Rank Challenge with YetiRank.", JMLR W&CP 14, 2011.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np
from catboost import CatBoostRanker, Pool

#: The ranking losses this trainer supports (a loss may carry CatBoost parameters, ``"YetiRank:decay=0.95"``).
LOSSES: tuple[str, ...] = ("YetiRank", "YetiRankPairwise", "QueryRMSE")
#: The metrics :func:`evaluate` reports, at its ``k``.
METRICS: tuple[str, ...] = ("ndcg", "mrr", "ips_dcg")
#: The row name of the fallback ranker in :func:`compare`'s table.
BASELINE = "rrf"
_MILLI = 1000.0  # ips_dcg's gains in ranx's integer qrels: thousandths
#: Documents are named for ranx by their served index at this fixed width: ranx's numba kernels are compiled
#: for the width of the longest id (a unicode array type), 20-40 s for each new width, so entity ids would
#: recompile whenever the longest id of a batch changes.
_DOC_WIDTH = 6
_ROUNDING = 1e-12  # so that 0.43 is within 0.02 of 0.45 in floating point too


@dataclass(frozen=True)
class Group:
    """One logged search: its candidates in served order, one row of each array per candidate."""

    group_id: str  # the search's request_id
    ts: float  # when it was searched; validation holds out the most recent searches
    ids: tuple[str, ...]  # candidate entity ids, in served order
    x: np.ndarray  # (n, F) float32 features; NaN = missing
    labels: np.ndarray  # (n,) graded relevance >= 0 (0 = not relevant)
    weights: np.ndarray  # (n,) inverse-propensity weight of each label (1.0 when unknown)
    baseline: np.ndarray  # (n,) the fallback's (RRF) score, higher = better

    def __post_init__(self) -> None:
        n = len(self.ids)
        if n == 0:
            raise ValueError(f"group {self.group_id}: `ids` must not be empty")
        if len(set(self.ids)) != n:
            raise ValueError(f"group {self.group_id}: `ids` must be unique")
        if self.x.ndim != 2 or self.x.shape[0] != n:
            raise ValueError(f"group {self.group_id}: `x` must have shape ({n}, F), got {self.x.shape}")
        for name in ("labels", "weights", "baseline"):
            a = getattr(self, name)
            if a.shape != (n,):
                raise ValueError(f"group {self.group_id}: `{name}` must have shape ({n},), got {a.shape}")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"group {self.group_id}: `{name}` must be finite")
        if np.any(np.isinf(self.x)):
            raise ValueError(f"group {self.group_id}: `x` must not be infinite (NaN marks a missing value)")
        if np.any(self.labels < 0):
            raise ValueError(f"group {self.group_id}: `labels` must be >= 0")
        if np.any(self.weights <= 0):
            raise ValueError(f"group {self.group_id}: `weights` must be > 0")

    @property
    def labelled(self) -> bool:
        """True when some candidate has a positive label: only such a search says anything about order."""
        return bool(np.any(self.labels > 0))


class Scorer(Protocol):
    """What :func:`compare` needs of a model: one score per row (CatBoost models have it)."""

    def predict(self, data: Any) -> Any: ...


Table = dict[str, dict[str, float]]


def split_recent(groups: Sequence[Group], holdout: float = 0.2) -> tuple[list[Group], list[Group]]:
    """``(train, validation)``: the most recent ``holdout`` share of the searches (by ``ts``) validates.

    Validating on the newest searches, not a random share, is what a deployed model faces: it is
    trained on the past and serves the future (catalog, users and queries drift). At least one
    search goes to each side; ties in ``ts`` are ordered by ``group_id`` so the split is reproducible.
    """
    if not 0.0 < holdout < 1.0:
        raise ValueError(f"`holdout` must be in (0, 1), got {holdout}")
    if len(groups) < 2:
        raise ValueError(f"`groups` must hold at least 2 searches to split, got {len(groups)}")
    ordered = sorted(groups, key=lambda g: (g.ts, g.group_id))
    n_val = min(len(ordered) - 1, max(1, round(len(ordered) * holdout)))
    return ordered[:-n_val], ordered[-n_val:]


def train_ranker(
    groups: Sequence[Group],
    feature_names: Sequence[str],
    *,
    loss: str = "YetiRank",
    iterations: int = 150,
    learning_rate: float = 0.15,
    depth: int = 6,
    seed: int = 0,
    thread_count: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> CatBoostRanker:
    """Fit a CatBoost ranker grouped by search on the IPS-scaled targets (module docstring).

    Searches without a positive label are dropped: every order of an all-zero list is equally good,
    so they only cost time. ``thread_count`` is the trainer's CPU share (-1: every core of the
    host, which oversubscribes a Ray node). ``progress(done, total)`` is called after each
    boosting iteration. The defaults are sized to fit 5k searches x 50 candidates x 60 features
    in under a minute on 2 cores with YetiRank (YetiRankPairwise takes about twice as long).
    """
    if loss.split(":", 1)[0] not in LOSSES:
        raise ValueError(f"`loss` must be one of {', '.join(LOSSES)} (optionally with parameters), got {loss!r}")
    if iterations < 1:
        raise ValueError(f"`iterations` must be >= 1, got {iterations}")
    if not learning_rate > 0:
        raise ValueError(f"`learning_rate` must be > 0, got {learning_rate}")
    if not 1 <= depth <= 16:
        raise ValueError(f"`depth` must be in [1, 16], got {depth}")
    names = [str(n) for n in feature_names]
    if len(set(names)) != len(names):
        raise ValueError("`feature_names` must be unique")
    train = [g for g in groups if g.labelled]
    if not train:
        raise ValueError(f"`groups` must hold a search with a positive label, got none of {len(groups)}")
    for g in train:
        if g.x.shape[1] != len(names):
            raise ValueError(f"group {g.group_id}: `x` has {g.x.shape[1]} features, `feature_names` {len(names)}")

    pool = Pool(
        np.concatenate([g.x for g in train]).astype(np.float32, copy=False),
        label=_ips_targets(train),
        group_id=np.repeat(np.arange(len(train)), [len(g.ids) for g in train]),
        feature_names=names,
    )
    model = CatBoostRanker(
        loss_function=loss,
        iterations=iterations,
        learning_rate=learning_rate,
        depth=depth,
        random_seed=seed,
        thread_count=thread_count,
        verbose=False,
        allow_writing_files=False,  # no catboost_info/ in the trainer's working directory
    )
    model.fit(pool, callbacks=[_Progress(progress, iterations)] if progress is not None else None)
    return model


def _ips_targets(groups: Sequence[Group]) -> np.ndarray:
    """The training target :math:`y w / \\bar w_+` of every row of ``groups``, concatenated."""
    labels = np.concatenate([g.labels for g in groups]).astype(np.float64)
    weights = np.concatenate([g.weights for g in groups]).astype(np.float64)
    return labels * weights / weights[labels > 0].mean()


class _Progress:
    """A CatBoost callback that reports ``(done, total)`` iterations and never stops training."""

    def __init__(self, report: Callable[[int, int], None], total: int) -> None:
        self.report = report
        self.total = total

    def after_iteration(self, info: Any) -> bool:
        self.report(int(info.iteration), self.total)
        return True


def evaluate(groups: Sequence[Group], scores_by_group: Mapping[str, np.ndarray], k: int = 10) -> dict[str, float]:
    """``{"ndcg@k", "mrr@k", "hit_rate@k", "ips_dcg@k", "searches"}`` of the order ``scores_by_group`` gives
    each labelled search.

    Computed with ranx: the qrels are the positive labels (as integer grades, the gain of nDCG's
    Järvelin form), the run the scores. Searches without a positive label are skipped (their nDCG is
    undefined) and ``searches`` counts the rest; with none, the metrics are NaN. Ties are broken as
    serving breaks them: by the RRF score, then the served order, so equal scores give one
    reproducible order rather than ranx's sort order of the ids.

    The labels are those of the log, and clicks collected under the served order favour it: what it
    put low was seldom examined, so a ranker that promotes it is charged for non-relevant results
    that were merely unseen. nDCG and MRR on such labels are tilted towards the ranker that served
    the log, per search normalisation included (a search with one click at rank ``r`` scores
    :math:`1/\\log_2(r+1)` whatever that click's weight). ``ips_dcg@k`` is the estimate that is not:
    the DCG with the inverse-propensity scaled gains :math:`y_i w_i`,

    .. math::

        \\widehat{\\mathrm{DCG}}@k = \\sum_{i:\\, r_i \\le k} \\frac{y_i w_i}{\\log_2(r_i + 1)},

    with :math:`r_i` the rank: unbiased for the DCG of the true relevance under the position-based
    model, since each gain is (Joachims et al., 2017). Averaged over the same searches it compares
    rankers, on no fixed scale. ranx's qrels are integers, so the gains are carried in thousandths.
    """
    if k < 1:
        raise ValueError(f"`k` must be >= 1, got {k}")
    names = [f"ndcg@{k}", f"mrr@{k}", f"hit_rate@{k}"]  # hit_rate: a positive in the top k
    qrels: dict[str, dict[str, int]] = {}
    ips_qrels: dict[str, dict[str, int]] = {}
    run: dict[str, dict[str, float]] = {}
    for g in groups:
        if not g.labelled:
            continue
        if g.group_id not in scores_by_group:
            raise ValueError(f"`scores_by_group` has no scores for group {g.group_id}")
        scores = np.asarray(scores_by_group[g.group_id], dtype=np.float64)
        n = len(g.ids)
        if n >= 10**_DOC_WIDTH:
            raise ValueError(f"group {g.group_id}: at most {10**_DOC_WIDTH - 1} candidates can be evaluated, got {n}")
        if scores.shape != (n,) or not np.all(np.isfinite(scores)):
            raise ValueError(f"`scores_by_group[{g.group_id!r}]` must be {n} finite scores, got shape {scores.shape}")
        order = np.lexsort((np.arange(n), -g.baseline, -scores))  # the last key sorts first
        run[g.group_id] = {_doc(i): float(n - r) for r, i in enumerate(order)}
        positive = np.flatnonzero(g.labels > 0)
        qrels[g.group_id] = {_doc(i): max(1, round(float(g.labels[i]))) for i in positive}
        ips_qrels[g.group_id] = {_doc(i): max(1, round(_MILLI * float(g.labels[i] * g.weights[i]))) for i in positive}
    ips = f"ips_dcg@{k}"
    if not qrels:
        return {**dict.fromkeys([*names, ips], math.nan), "searches": 0.0}
    from numba.core.errors import NumbaTypeSafetyWarning
    from ranx import Qrels, Run
    from ranx import evaluate as ranx_evaluate

    with warnings.catch_warnings():
        # ranx's kernels warn "unsafe cast from uint64 to int64" while numba compiles them (not ours to fix;
        # the message starts with terminal colour codes, so it is matched anywhere, not at its start).
        warnings.filterwarnings("ignore", message=".*unsafe cast from uint64 to int64")
        warnings.simplefilter("ignore", NumbaTypeSafetyWarning)
        result = ranx_evaluate(Qrels(qrels), Run(run), names)
        ips_dcg = ranx_evaluate(Qrels(ips_qrels), Run(run), f"dcg@{k}") / _MILLI
    return {**{m: float(result[m]) for m in names}, ips: float(ips_dcg), "searches": float(len(qrels))}


def _doc(i: int | np.integer) -> str:
    return f"{int(i):0{_DOC_WIDTH}d}"


def predict_groups(model: Scorer, groups: Sequence[Group]) -> dict[str, np.ndarray]:
    """``{group_id: scores}`` of ``model`` on every group, in one ``predict`` call (CatBoost's per-call
    overhead is larger than scoring one search)."""
    if not groups:
        return {}
    scores = np.asarray(model.predict(np.concatenate([g.x for g in groups])), dtype=np.float64)
    bounds = np.cumsum([len(g.ids) for g in groups])[:-1]
    return {g.group_id: s for g, s in zip(groups, np.split(scores, bounds), strict=True)}


def compare(groups: Sequence[Group], models: Mapping[str, Scorer | None], *, k: int = 10) -> Table:
    """``{ranker: metrics}`` on the same searches: ``"rrf"`` from each group's baseline, then every model.

    A model given as None (e.g. ``"current"`` when nothing is published yet) has no row.
    """
    if BASELINE in models:
        raise ValueError(f"`models` must not name a model {BASELINE!r}: that row is the baseline")
    table: Table = {BASELINE: evaluate(groups, {g.group_id: g.baseline for g in groups}, k)}
    for name, model in models.items():
        if model is not None:
            table[name] = evaluate(groups, predict_groups(model, groups), k)
    return table


def compare_losses(
    train: Sequence[Group],
    validation: Sequence[Group],
    feature_names: Sequence[str],
    *,
    losses: Sequence[str] = LOSSES,
    k: int = 10,
    **train_kwargs: Any,
) -> Table:
    """Train one model per loss on ``train`` and compare them with RRF on ``validation``.

    Each loss row also has ``train_s``, its training time in seconds. YetiRankPairwise is several
    times slower than YetiRank per iteration, so this is a report to run, not a trainer step.
    """
    models: dict[str, CatBoostRanker] = {}
    seconds: dict[str, float] = {}
    for loss in losses:
        started = time.perf_counter()
        models[loss] = train_ranker(train, feature_names, loss=loss, **train_kwargs)
        seconds[loss] = time.perf_counter() - started
    table = compare(validation, models, k=k)
    for loss, s in seconds.items():
        table[loss]["train_s"] = s
    return table


def format_table(table: Table, columns: Sequence[str] | None = None) -> str:
    """A markdown table of ``table`` (rows in its order); ``columns`` default to every metric seen."""
    if columns is None:
        columns = list(dict.fromkeys(c for row in table.values() for c in row))
    lines = ["| ranker | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, row in table.items():
        cells = [_cell(c, row.get(c)) for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(column: str, value: float | None) -> str:
    if value is None:
        return ""
    if column == "searches":
        return f"{value:.0f}"
    if column.endswith("_s"):
        return f"{value:.1f}"
    return f"{value:.4f}"


def should_publish(
    new: Mapping[str, float],
    current: Mapping[str, float] | None,
    rrf: Mapping[str, float],
    *,
    metric: str = "ndcg@10",
    tolerance: float = 0.0,
) -> tuple[bool, str]:
    """Whether a new model may replace the served one, and why, from metrics on the same held-out searches.

    Published only if ``new[metric] >= current[metric] - tolerance`` (when a model is published) and
    ``new[metric] >= rrf[metric] - tolerance``: a model that loses to what serves now, or to the
    fallback it would otherwise be replaced by, is kept out. A NaN metric (no labelled held-out
    search) never publishes. The reason names the numbers, for the logs and the CLI.
    """
    if not tolerance >= 0:
        raise ValueError(f"`tolerance` must be >= 0, got {tolerance}")
    sides = {"new": new, "rrf": rrf} if current is None else {"new": new, "current": current, "rrf": rrf}
    for side, metrics in sides.items():
        if metric not in metrics:
            raise ValueError(f"`{side}` must have the metric {metric!r}, got {', '.join(metrics) or 'none'}")
    value = float(new[metric])
    if math.isnan(value):
        return False, f"not published: the new model's {metric} is NaN (no labelled held-out search)"
    failed, passed = [], []
    for side in ("current", "rrf"):
        if side not in sides:
            continue
        other = float(sides[side][metric])
        comparison = f"{side} {other:.4f}"
        if math.isnan(other) or value >= other - tolerance - _ROUNDING:
            passed.append(comparison)
        else:
            failed.append(comparison)
    within = f" (tolerance {tolerance:g})" if tolerance else ""
    if failed:
        return False, f"not published: {metric} {value:.4f} is worse than {' and '.join(failed)}{within}"
    first = "" if current is not None else "nothing published yet; "
    return True, f"published: {first}{metric} {value:.4f} is not worse than {' and '.join(passed)}{within}"
