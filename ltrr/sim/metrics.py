"""Final-list quality of every contender of a regret run, computed with ranx: pure, no I/O.

Each simulated query has one wanted entity (:class:`ltrr.sim.users.SimQuery`), so a contender's
list scores by where it puts that entity: ``hit_rate@10`` (it is in the top 10), ``mrr@10``,
``ndcg@10`` (binary gain: :math:`1/\\log_2(r+1)` at rank :math:`r \\le 10`) and ``recall@100``
(it is anywhere in the top 100: candidate recall for a peer, which returns one ranked list).

ranx's numba kernels are compiled for the width of the longest document id, so documents are
named by their position in the list at a fixed width (as :func:`ltrr.ranking.train.evaluate`
does); the wanted entity, when a list lacks it, is a document no list holds.
"""

from __future__ import annotations

import math
import warnings
from typing import Mapping, Sequence

METRICS = ("hit_rate@10", "mrr@10", "ndcg@10", "recall@100")
_WIDTH = 6
_ABSENT = "9" * _WIDTH  # the wanted entity of a list that lacks it
_EMPTY = "9" * (_WIDTH - 1) + "8"  # the one document of an empty list (ranx needs one)


def list_metrics(
    lists: Mapping[str, Sequence[str]], wanted: Mapping[str, str], metrics: Sequence[str] = METRICS
) -> dict[str, float]:
    """Mean ``metrics`` over the queries of ``lists`` (query id -> ranked entity ids, best first),
    judged by ``wanted`` (query id -> the one relevant entity). NaN for every metric if no query."""
    if not lists:
        return dict.fromkeys(metrics, math.nan)
    missing = [q for q in lists if q not in wanted]
    if missing:
        raise ValueError(f"`wanted` has no entity for query {missing[0]!r}")
    qrels: dict[str, dict[str, int]] = {}
    run: dict[str, dict[str, float]] = {}
    for q, ids in lists.items():
        ids = list(dict.fromkeys(ids))  # a list names an entity once
        if len(ids) >= 10**_WIDTH - 2:
            raise ValueError(f"query {q!r}: at most {10**_WIDTH - 3} ids can be scored, got {len(ids)}")
        n = len(ids)
        run[q] = {f"{i:0{_WIDTH}d}": float(n - i) for i in range(n)} if n else {_EMPTY: 0.0}
        pos = ids.index(wanted[q]) if wanted[q] in ids else None
        qrels[q] = {(_ABSENT if pos is None else f"{pos:0{_WIDTH}d}"): 1}
    from numba.core.errors import NumbaTypeSafetyWarning
    from ranx import Qrels, Run
    from ranx import evaluate as ranx_evaluate

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*unsafe cast from uint64 to int64")
        warnings.simplefilter("ignore", NumbaTypeSafetyWarning)
        out = ranx_evaluate(Qrels(qrels), Run(run), list(metrics), make_comparable=True)
    if isinstance(out, float):  # ranx returns a bare float for one metric
        out = {metrics[0]: out}
    return {m: float(out[m]) for m in metrics}
