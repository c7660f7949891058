"""A fitted prior for the per-arm hit models: how a fresh deployment starts better than flat.

A flat prior (every arm hits with ``prior_hit_rate`` whatever the query) makes a new
deployment explore blindly. This prior is fitted on *full-information* records of predicted
queries (queries the catalog and the imported users predict, never the users being served):
for each record, the named context features the policy saw and, per strategy, the rank of the
wanted entity in that strategy's candidates at the ladder's largest budget (None when absent).
Every arm :math:`(s, k)` observes every record, with reward :math:`\\mathbb{1}[\\mathrm{rank}_s \\le k]`.

The fit is kept as per-arm means over the ``n`` records,
:math:`\\bar S = \\frac1n \\sum_t x_t x_t^\\top` (shared: every arm observes every record) and
:math:`\\bar m_i = \\frac1n \\sum_t r_{i,t} x_t`,
and installed with a weight ``w`` (pseudo-observations):

.. math::

    A_i = \\lambda I + w \\bar S, \\qquad b_i = \\lambda \\mu_0 e_0 + w \\bar m_i,

so the prior counts as ``w`` searches however many records fitted it, and live feedback
overtakes it after a few hundred searches. Features are stored by name: a feature the prior
does not know gets no prior information beyond the ridge (its rows are 0), and a feature it
knows but the policy no longer uses is dropped.

The same records show how the strategies' hits overlap: :func:`estimate_pair_overlap` fits each
pair's :math:`\\omega_{st}` (:mod:`ltrr.bandit.actions`, pairwise overlap) against the prior's own
hit predictions, kept as ``pair_overlap`` (``policy.pair_overlap: prior`` installs it).

Saved as one ``.npz`` (``xtx``, ``xtr``, ``pair_overlap``) with a JSON header (strategies, ladder, feature names,
record count, provenance); :func:`load_prior` checks it against the policy it is installed in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ltrr.bandit.linear import LinearArms
from ltrr.errors import ConfigError


@dataclass(frozen=True)
class FittedPrior:
    strategies: tuple[str, ...]
    ladder: tuple[int, ...]
    names: tuple[str, ...]
    xtx: np.ndarray  # (d, d): mean x x^T of the records (every arm observes every record)
    xtr: np.ndarray  # (n_arms, d): mean r x
    n: int
    provenance: str = ""
    #: (S, S) pairwise overlap of the strategies' hits (:func:`estimate_pair_overlap`); None in older files
    pair_overlap: np.ndarray | None = None

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = {
            "strategies": list(self.strategies),
            "ladder": list(self.ladder),
            "names": list(self.names),
            "n": self.n,
            "provenance": self.provenance,
        }
        arrays: dict[str, Any] = {"xtx": self.xtx, "xtr": self.xtr, "header": np.array(json.dumps(header))}
        if self.pair_overlap is not None:
            arrays["pair_overlap"] = self.pair_overlap
        with path.open("wb") as f:
            np.savez_compressed(f, **arrays)
        return path

    def pairs_for(self, strategies: Sequence[str]) -> np.ndarray | None:
        """The pairwise overlap over ``strategies``, by name (a strategy the prior was not fitted with
        overlaps nothing: 0); None when the prior holds no pairs. A policy over a subset of the
        prior's strategies (while an index is still building) keeps the pairs it has."""
        if self.pair_overlap is None:
            return None
        idx = [self.strategies.index(s) if s in self.strategies else -1 for s in strategies]
        out = np.zeros((len(idx), len(idx)))
        for a, i in enumerate(idx):
            for b, j in enumerate(idx):
                if i >= 0 and j >= 0 and a != b:
                    out[a, b] = self.pair_overlap[i, j]
        return out

    def hit_rates(self) -> np.ndarray:
        """Mean hit rate of every arm over the records (the bias feature's share of ``xtr``)."""
        return self.xtr[:, self.names.index("bias")] if "bias" in self.names else np.zeros(len(self.xtr))

    def install(self, arms: LinearArms, names: Sequence[str], ridge: float, prior_mean: float, weight: float) -> None:
        """Set ``arms`` to this prior with ``weight`` pseudo-observations, in place, for features ``names``."""
        n_arms, d = arms.b.shape
        if n_arms != self.xtr.shape[0]:
            raise ValueError(f"`arms` must hold {self.xtr.shape[0]} arms for this prior, got {n_arms}")
        if len(names) != d:
            raise ValueError(f"`names` must name the {d} features of `arms`, got {len(names)}")
        idx = {name: i for i, name in enumerate(self.names)}
        src = np.array([idx.get(name, -1) for name in names])
        known = src >= 0
        xtx = np.zeros((d, d))
        xtr = np.zeros((n_arms, d))
        xtx[np.ix_(known, known)] = self.xtx[np.ix_(src[known], src[known])]
        xtr[:, known] = self.xtr[:, src[known]]
        arms.reset(ridge, prior_mean)
        arms.a_inv[...] = np.linalg.inv(ridge * np.eye(d) + weight * xtx)[None]
        arms.b[...] += weight * xtr
        arms.theta[...] = (arms.a_inv @ arms.b[..., None])[..., 0]


def fit_prior(
    records: Iterable[tuple[Mapping[str, float], Mapping[str, int | None]]],
    strategies: Sequence[str],
    ladder: Sequence[int],
    names: Sequence[str],
    provenance: str = "",
    fit_ridge: float = 25.0,
) -> FittedPrior:
    """Fit from ``(features, ranks)`` records: ``features`` the named context features, ``ranks``
    each strategy's 1-based rank of the wanted entity at the largest budget (None or absent: missed).
    ``fit_ridge``: the ridge of the per-arm fit whose predictions :func:`estimate_pair_overlap` reads."""
    strategies, ladder, names = tuple(strategies), tuple(int(k) for k in ladder), tuple(names)
    budgets = ladder[1:]
    if not budgets:
        raise ValueError(f"`ladder` must have a positive budget, got {list(ladder)}")
    d, n_arms = len(names), len(strategies) * len(budgets)
    xs: list[np.ndarray] = []
    hits: list[list[list[float]]] = []
    for features, ranks in records:
        x = np.fromiter((float(features.get(name, 0.0)) for name in names), dtype=float, count=d)
        if not np.all(np.isfinite(x)):
            raise ValueError(f"`records[{len(xs)}]` has non-finite features")
        rank = [ranks.get(name) for name in strategies]
        hits.append([[float(r is not None and r <= k) for k in budgets] for r in rank])
        xs.append(x)
    if not xs:
        raise ValueError("`records` must hold at least one record")
    x_all, h = np.array(xs), np.array(hits)  # (n, d), (n, S, L - 1)
    n = len(xs)
    xtx, xtr = x_all.T @ x_all / n, (h.reshape(n, n_arms).T @ x_all) / n
    theta = np.linalg.solve(xtx + (fit_ridge / n) * np.eye(d), xtr.T)  # (d, n_arms): the prior's own fit
    predicted = np.maximum.accumulate(np.clip(x_all @ theta, 0.0, 1.0).reshape(h.shape), axis=-1)
    overlap = estimate_pair_overlap(h, predicted) if len(strategies) > 1 else None
    return FittedPrior(strategies, ladder, names, xtx, xtr, n, provenance, overlap)


def estimate_pair_overlap(hits: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Each pair's :math:`\\omega_{st}` from 0/1 ``hits`` and the model's ``predicted`` hit
    probabilities, both ``(n, S, L - 1)`` (every record, strategy and positive budget).

    A moment match, pooled over records and budgets: with :math:`C = \\sum h_s h_t` the observed
    joint hits, :math:`I = \\sum p_s p_t` what independence predicts and :math:`N = \\sum \\min(p_s, p_t)`
    what nesting predicts, :math:`\\omega = (C - I) / (N - I)` when hits co-occur more than
    independence says, else :math:`(C - I) / I` (towards disjoint hits), clipped to [-1, 1].
    Returns a symmetric ``(S, S)`` matrix with a zero diagonal."""
    if hits.shape != predicted.shape or hits.ndim != 3:
        raise ValueError(f"`hits` and `predicted` must both be (n, S, L - 1), got {hits.shape} and {predicted.shape}")
    n_s = hits.shape[1]
    out = np.zeros((n_s, n_s))
    for i in range(n_s):
        for j in range(i + 1, n_s):
            joint = float((hits[:, i] * hits[:, j]).sum())
            ind = float((predicted[:, i] * predicted[:, j]).sum())
            nest = float(np.minimum(predicted[:, i], predicted[:, j]).sum())
            if joint >= ind:
                w = (joint - ind) / (nest - ind) if nest > ind else 0.0
            else:
                w = (joint - ind) / ind
            out[i, j] = out[j, i] = float(np.clip(w, -1.0, 1.0))
    return out


def load_prior(path: str | Path, strategies: Sequence[str], ladder: Sequence[int]) -> FittedPrior:
    """Read a saved prior and check it was fitted for ``strategies`` and ``ladder``
    (:class:`~ltrr.errors.ConfigError` naming ``policy.prior_path`` otherwise)."""
    prior = read_prior(path)
    if prior.strategies != tuple(strategies) or prior.ladder != tuple(ladder):
        raise ConfigError(
            f"policy.prior_path: {str(path)!r} was fitted for strategies {list(prior.strategies)} and ladder "
            f"{list(prior.ladder)}, the policy has {list(strategies)} and {list(ladder)}"
        )
    return prior


def read_prior(path: str | Path) -> FittedPrior:
    """Read a saved prior whatever it was fitted for (:func:`load_prior` checks that)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"policy.prior_path: no prior file at {str(p)!r}")
    try:
        with np.load(p, allow_pickle=False) as z:
            header = json.loads(str(z["header"]))
            xtx, xtr = np.array(z["xtx"], dtype=float), np.array(z["xtr"], dtype=float)
            pairs = np.array(z["pair_overlap"], dtype=float) if "pair_overlap" in z.files else None
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"policy.prior_path: {str(p)!r} is not a prior file ({exc})") from exc
    return FittedPrior(
        tuple(header["strategies"]),
        tuple(header["ladder"]),
        tuple(header["names"]),
        xtx,
        xtr,
        int(header["n"]),
        str(header.get("provenance", "")),
        pairs,
    )
