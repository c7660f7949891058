"""The fitted prior: fit on full-information records, save, load, install by feature name."""

from __future__ import annotations

import numpy as np
import pytest

from ltrr.bandit import ContextFeaturizer, LinearArms
from ltrr.bandit.prior import FittedPrior, fit_prior, load_prior
from ltrr.errors import ConfigError

STRATEGIES = ("lexical", "graph")
LADDER = (0, 10, 50)


def records(n: int = 400, seed: int = 0):
    """Names: lexical holds the item at rank 3, graph misses; "like X": graph at rank 20, lexical misses."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        if rng.random() < 0.5:
            yield {"bias": 1.0, "class.name": 1.0}, {"lexical": 3, "graph": None}
        else:
            yield {"bias": 1.0, "class.seed": 1.0}, {"lexical": None, "graph": 20}


def test_fit_by_hand():
    names = ("bias", "class.name")
    prior = fit_prior(
        [({"bias": 1.0, "class.name": 1.0}, {"lexical": 3}), ({"bias": 1.0}, {"graph": 20, "lexical": None})],
        STRATEGIES,
        LADDER,
        names,
    )
    np.testing.assert_allclose(prior.xtx, [[1.0, 0.5], [0.5, 0.5]])
    # arms: lexical@10, lexical@50, graph@10, graph@50
    np.testing.assert_allclose(prior.xtr, [[0.5, 0.5], [0.5, 0.5], [0.0, 0.0], [0.5, 0.0]])
    assert prior.hit_rates().tolist() == [0.5, 0.5, 0.0, 0.5] and prior.n == 2


def test_installed_prior_predicts_each_class_and_counts_as_its_weight(tmp_path):
    fz = ContextFeaturizer(STRATEGIES)
    prior = fit_prior(records(), STRATEGIES, LADDER, fz.names, provenance="test")
    prior = load_prior(prior.save(tmp_path / "p.npz"), STRATEGIES, LADDER)
    assert prior.provenance == "test" and prior.n == 400
    arms = LinearArms.zeros(4, fz.dim)
    prior.install(arms, fz.names, ridge=1.0, prior_mean=0.3, weight=200.0)
    name = fz.vector({"bias": 1.0, "class.name": 1.0})
    seed = fz.vector({"bias": 1.0, "class.seed": 1.0})
    np.testing.assert_allclose(arms.mean(name), [1.0, 1.0, 0.0, 0.0], atol=0.02)
    np.testing.assert_allclose(arms.mean(seed), [0.0, 0.0, 0.0, 1.0], atol=0.02)
    assert arms.count.tolist() == [0.0] * 4, "pseudo-observations are not counted as feedback"
    # weight w: the width is that of ~w/2 observations of each class (half the records each)
    assert 1 / np.sqrt(0.5 * 200 + 1.0) == pytest.approx(arms.width(name)[0], rel=0.05)


def test_install_maps_features_by_name():
    fz = ContextFeaturizer(STRATEGIES)
    prior = fit_prior(records(), STRATEGIES, LADDER, ("bias", "class.seed", "retired_feature"))
    arms = LinearArms.zeros(4, fz.dim)
    prior.install(arms, fz.names, ridge=1.0, prior_mean=0.3, weight=200.0)
    assert arms.mean(fz.vector({"bias": 1.0, "class.seed": 1.0}))[3] == pytest.approx(1.0, abs=0.02)
    unknown = fz.names.index("q_chars")
    assert arms.a_inv[0, unknown, unknown] == pytest.approx(1.0), "a feature the prior lacks keeps the ridge only"


def test_load_errors_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match=r"policy.prior_path: no prior file at '.*missing.npz'"):
        load_prior(tmp_path / "missing.npz", STRATEGIES, LADDER)
    (tmp_path / "bad.npz").write_bytes(b"not a prior")
    with pytest.raises(ConfigError, match="is not a prior file"):
        load_prior(tmp_path / "bad.npz", STRATEGIES, LADDER)
    path = fit_prior(records(10), STRATEGIES, LADDER, ("bias",)).save(tmp_path / "p.npz")
    with pytest.raises(ConfigError, match=r"was fitted for strategies \['lexical', 'graph'\] and ladder \[0, 10, 50\]"):
        load_prior(path, ("lexical", "vector"), LADDER)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"records": []}, "`records` must hold at least one record"),
        ({"ladder": (0,)}, r"`ladder` must have a positive budget, got \[0\]"),
        ({"records": [({"bias": float("nan")}, {})]}, r"`records\[0\]` has non-finite features"),
    ],
)
def test_fit_rejects(kwargs, message):
    args = {"records": list(records(5)), "strategies": STRATEGIES, "ladder": LADDER, "names": ("bias",), **kwargs}
    with pytest.raises(ValueError, match=message):
        fit_prior(**args)


def test_install_checks_shapes():
    prior = FittedPrior(STRATEGIES, LADDER, ("bias",), np.ones((1, 1)), np.zeros((4, 1)), 1)
    with pytest.raises(ValueError, match="`arms` must hold 4 arms for this prior, got 2"):
        prior.install(LinearArms.zeros(2, 1), ("bias",), 1.0, 0.3, 1.0)
    with pytest.raises(ValueError, match="`names` must name the 1 features of `arms`, got 2"):
        prior.install(LinearArms.zeros(4, 1), ("bias", "x"), 1.0, 0.3, 1.0)


def test_fit_estimates_how_the_strategies_hits_overlap(tmp_path):
    """lexical and memory find the same names (nested); graph finds what they miss (disjoint)."""
    strategies = ("lexical", "graph", "memory")
    rng = np.random.default_rng(0)
    recs = []
    for _ in range(600):
        hit = rng.random() < 0.5  # the names both find, or not, in the same context
        recs.append(({"bias": 1.0}, {"lexical": 2 if hit else None, "memory": 1 if hit else None,
                                     "graph": None if hit else 5}))  # fmt: skip
    prior = fit_prior(recs, strategies, LADDER, ("bias",))
    om = prior.pair_overlap
    assert om is not None and om.shape == (3, 3) and np.allclose(om, om.T) and np.all(np.diag(om) == 0)
    assert om[0, 2] == pytest.approx(1.0, abs=0.02), "lexical+memory: nested"
    assert om[0, 1] == pytest.approx(-1.0, abs=0.02) and om[1, 2] == pytest.approx(-1.0, abs=0.02), "disjoint"
    loaded = load_prior(prior.save(tmp_path / "p.npz"), strategies, LADDER)
    np.testing.assert_array_equal(loaded.pair_overlap, om)


def test_independent_hits_have_no_overlap():
    from ltrr.bandit.prior import estimate_pair_overlap

    rng = np.random.default_rng(1)
    hits = (rng.random((20000, 2, 1)) < 0.4).astype(float)
    om = estimate_pair_overlap(hits, np.full(hits.shape, 0.4))
    assert abs(om[0, 1]) < 0.05
    with pytest.raises(ValueError, match=r"`hits` and `predicted` must both be \(n, S, L - 1\)"):
        estimate_pair_overlap(hits, np.zeros((3, 2)))


def test_pair_overlap_from_the_prior_or_by_name(tmp_path):
    from ltrr.bandit import PolicyConfig, space_for

    path = tmp_path / "p.npz"
    old = fit_prior(records(), STRATEGIES, LADDER, ("bias", "class.name", "class.seed"))
    FittedPrior(*[getattr(old, f) for f in ("strategies", "ladder", "names", "xtx", "xtr", "n")]).save(path)
    cfg = PolicyConfig(ladder=LADDER, prior_path=str(path), pair_overlap="prior")
    with pytest.raises(ConfigError, match="policy.pair_overlap: the prior at .* holds no pairs; refit it"):
        space_for(cfg, STRATEGIES)
    old.save(path)
    np.testing.assert_array_equal(space_for(cfg, STRATEGIES).pair_overlap, old.pair_overlap)
    named = PolicyConfig(ladder=LADDER, pair_overlap={"lexical+graph": -0.5, "lexical+vector": 0.9})
    np.testing.assert_array_equal(space_for(named, STRATEGIES).pair_overlap, [[0.0, -0.5], [-0.5, 0.0]])
    assert space_for(PolicyConfig(ladder=LADDER), STRATEGIES).pair_overlap is None


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"pair_overlap": "prior"}, "pair_overlap: 'prior' needs a prior_path"),
        ({"pair_overlap": {"lexical": 0.5}}, "pair_overlap: keys must be 'strategy\\+other', got 'lexical'"),
        ({"pair_overlap": {"graph+graph": 0.5}}, "pair_overlap: keys must be 'strategy\\+other', got 'graph\\+graph'"),
        ({"pair_overlap": {"lexical+graph": 2.0}}, r"pair_overlap\['lexical\+graph'\]: must be in \[-1, 1\], got 2.0"),
        ({"soft_labels": True}, r"soft_labels: needs position_bias"),
    ],
)
def test_policy_config_rejects(kwargs, message):
    from pydantic import ValidationError

    from ltrr.bandit import PolicyConfig

    with pytest.raises(ValidationError, match=message):
        PolicyConfig(**kwargs)


def test_a_policy_over_some_of_the_priors_strategies_keeps_their_pairs(tmp_path):
    """While an index builds, the app runs a policy over fewer strategies; the pairs map by name."""
    from ltrr.bandit import PolicyConfig, space_for

    om = np.array([[0.0, 0.9, -0.2], [0.9, 0.0, 0.5], [-0.2, 0.5, 0.0]])
    prior = fit_prior(records(), STRATEGIES, LADDER, ("bias",))
    path = FittedPrior(("lexical", "vector", "graph"), LADDER, prior.names, prior.xtx,
                       np.zeros((6, 1)), prior.n, "", om).save(tmp_path / "p.npz")  # fmt: skip
    cfg = PolicyConfig(ladder=LADDER, prior_path=str(path), pair_overlap="prior")
    np.testing.assert_array_equal(space_for(cfg, ("lexical", "graph")).pair_overlap, [[0.0, -0.2], [-0.2, 0.0]])
    got = space_for(cfg, ("graph", "memory", "vector")).pair_overlap
    np.testing.assert_array_equal(got, [[0.0, 0.0, 0.5], [0.0, 0.0, 0.0], [0.5, 0.0, 0.0]])
