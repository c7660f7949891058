"""The position-based click model: exact examination probabilities, seeded rates, shared draws."""

from __future__ import annotations

import numpy as np
import pytest

from ltrr.errors import InvalidRequest
from ltrr.sim.clicks import Click, PositionClickModel


def test_examination_is_r_to_the_minus_eta() -> None:
    assert PositionClickModel().examination().tolist() == pytest.approx([1 / r for r in range(1, 11)])
    assert PositionClickModel(eta=2.0, depth=3).examination().tolist() == pytest.approx([1.0, 0.25, 1 / 9])
    assert PositionClickModel(eta=0.0, depth=2).examination().tolist() == [1.0, 1.0]


def test_examination_rates_on_a_seeded_draw() -> None:
    model = PositionClickModel()
    rng = np.random.default_rng(0)
    n = 20_000
    seen = np.stack([model.examined(model.draw(rng)) for _ in range(n)])
    theta = model.examination()
    sd = np.sqrt(theta * (1 - theta) / n)
    assert np.all(np.abs(seen.mean(axis=0) - theta) <= 4 * sd + 1e-12)  # rank 1 is always examined
    # The click rate of an item shown at rank r is its examination probability.
    clicks = [model.click(["x"] * 2 + ["w"], "w", model.draw(rng)) for _ in range(n)]
    rate = np.mean([c == 3 for c in clicks])
    assert abs(rate - 1 / 3) < 4 * np.sqrt(2 / 9 / n)


def test_click_needs_the_wanted_item_shown_and_examined() -> None:
    model = PositionClickModel(depth=3)
    draw = np.array([0.9, 0.4, 0.5])  # examined: rank 1 (0.9 < 1), rank 2 (0.4 < 0.5), not rank 3 (0.5 >= 1/3)
    assert model.examined(draw).tolist() == [True, True, False]
    assert model.click(["w", "x"], "w", draw) == 1
    assert model.click(["x", "w"], "w", draw) == 2
    assert model.click(["x", "y", "w"], "w", draw) is None  # shown but not examined
    assert model.click(["x", "y", "z", "w"], "w", draw) is None  # below the depth
    assert model.click([], "w", draw) is None
    # two rankers, one draw: the same position gives the same outcome
    assert model.click(["a", "w"], "w", draw) == model.click(["b", "w", "c"], "w", draw)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"eta": -1.0}, "eta: must be in [0, 10], got -1.0"),
        ({"eta": "1"}, "eta: must be in [0, 10], got '1'"),
        ({"depth": 0}, "depth: must be an int in [1, 100], got 0"),
        ({"depth": 2.0}, "depth: must be an int in [1, 100], got 2.0"),
    ],
)
def test_click_model_rejects(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        PositionClickModel(**kwargs)  # type: ignore[arg-type]
    assert str(err.value) == message


def test_draw_shape_is_checked() -> None:
    with pytest.raises(InvalidRequest, match=r"^draw: must have shape \(10,\), got \(3,\)$"):
        PositionClickModel().examined(np.zeros(3))


# -- noise clicks and play/skip ----------------------------------------------------------------------


def test_noise_free_model_keeps_its_draw_and_click() -> None:
    model = PositionClickModel()
    assert (model.noise, model.skip, model.draw_size) == (0.0, 1.0, 10)
    rng, again = np.random.default_rng(4), np.random.default_rng(4)
    for _ in range(200):
        draw = model.draw(rng)
        assert draw.tolist() == again.random(10).tolist()  # shape (depth,), as saved runs hold
        shown = ["x", "w", "y"]
        pos = model.click(shown, "w", draw)
        assert model.outcome(shown, "w", draw) == (() if pos is None else (Click(pos, True, "play"),))


def test_outcome_on_a_hand_made_draw() -> None:
    model = PositionClickModel(depth=3, noise=0.2, skip=0.3)
    # examined: ranks 1 and 2 (as above); u_noise 0.1 < 0.2: a noise click; u_pick 0.7; u_skip 0.5 >= 0.3: a play
    draw = np.array([0.9, 0.4, 0.5, 0.1, 0.7, 0.5])
    assert model.draw_size == 6 and model.examined(draw).tolist() == [True, True, False]
    # wanted at rank 2 (examined): a play; examined non-wanted: rank 1 alone -> floor(0.7 * 1) = 0 -> rank 1
    assert model.outcome(["x", "w", "y"], "w", draw) == (Click(1, False, "play"), Click(2, True, "play"))
    assert model.click(["x", "w", "y"], "w", draw) == 2  # click() is the wanted item's alone
    # wanted at rank 3 (not examined); examined non-wanted ranks 1, 2 -> floor(0.7 * 2) = 1 -> rank 2
    assert model.outcome(["x", "y", "w"], "w", draw) == (Click(2, False, "play"),)
    skipping = PositionClickModel(depth=3, noise=0.2, skip=0.6)  # u_skip 0.5 < 0.6
    assert skipping.outcome(["x", "y", "w"], "w", draw) == (Click(2, False, "skip"),)
    assert model.outcome(["w"], "w", draw) == (Click(1, True, "play"),)  # no examined non-wanted result
    calm = draw.copy()
    calm[3] = 0.25  # u_noise >= 0.2: no noise click
    assert model.outcome(["x", "y", "w"], "w", calm) == ()
    assert Click.from_dict(Click(2, False, "skip").to_dict()) == Click(2, False, "skip")


def test_noise_clicks_happen_at_the_configured_rate_on_a_seeded_draw() -> None:
    model = PositionClickModel(noise=0.2, skip=0.25)
    plain = PositionClickModel()
    rng = np.random.default_rng(0)
    shown = ["x1", "x2", "w"] + [f"x{r}" for r in range(4, 11)]
    n = 20_000
    noise = skips = 0
    for _ in range(n):
        draw = model.draw(rng)
        assert draw.shape == (13,)
        clicks = model.outcome(shown, "w", draw)
        assert [c.position for c in clicks] == sorted(c.position for c in clicks)
        wanted = [c for c in clicks if c.wanted]
        other = [c for c in clicks if not c.wanted]
        # the wanted item's click is the noise-free model's on the same examination uniforms, always a play
        pos = plain.click(shown, "w", draw[:10])
        assert wanted == ([] if pos is None else [Click(3, True, "play")])
        assert len(other) <= 1
        for c in other:
            assert c.position != 3 and bool(model.examined(draw)[c.position - 1])
            noise += 1
            skips += c.outcome == "skip"
    # rank 1 is always examined and not wanted, so a noise click happens with probability 0.2 exactly
    assert abs(noise - 0.2 * n) <= 4 * np.sqrt(n * 0.2 * 0.8)
    assert abs(skips - 0.25 * noise) <= 4 * np.sqrt(noise * 0.25 * 0.75)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"noise": -0.1}, "noise: must be in [0, 1], got -0.1"),
        ({"noise": 1.5}, "noise: must be in [0, 1], got 1.5"),
        ({"noise": True}, "noise: must be in [0, 1], got True"),
        ({"skip": "1"}, "skip: must be in [0, 1], got '1'"),
        ({"noise": 0.1, "skip": 2}, "skip: must be in [0, 1], got 2"),
    ],
)
def test_noise_parameters_are_checked(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        PositionClickModel(**kwargs)  # type: ignore[arg-type]
    assert str(err.value) == message


def test_a_noisy_model_needs_the_longer_draw() -> None:
    with pytest.raises(InvalidRequest, match=r"^draw: must have shape \(13,\), got \(10,\)$"):
        PositionClickModel(noise=0.1).outcome(["w"], "w", np.zeros(10))
    with pytest.raises(InvalidRequest, match=r"^draw: must have shape \(10,\), got \(13,\)$"):
        PositionClickModel().click(["w"], "w", np.zeros(13))
