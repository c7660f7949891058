"""The position-based click model: exact examination probabilities, seeded rates, shared draws."""

from __future__ import annotations

import numpy as np
import pytest

from ltrr.errors import InvalidRequest
from ltrr.sim.clicks import PositionClickModel


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
