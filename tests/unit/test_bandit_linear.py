"""Per-arm ridge regression (ltrr.bandit.linear): prior, Sherman-Morrison updates, mean and width."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ltrr.bandit import LinearArms


def test_zeros_shapes() -> None:
    arms = LinearArms.zeros(4, 3)
    assert arms.a_inv.shape == (4, 3, 3)
    assert arms.b.shape == arms.theta.shape == (4, 3)
    assert arms.count.shape == (4,)
    assert arms.dim == 3


def test_reset_is_the_prior() -> None:
    arms = LinearArms.zeros(2, 3)
    arms.count[:] = 5.0
    arms.reset(ridge=4.0, prior_mean=0.3)
    np.testing.assert_array_equal(arms.a_inv, np.broadcast_to(np.eye(3) / 4.0, (2, 3, 3)))
    np.testing.assert_array_equal(arms.b, [[1.2, 0, 0], [1.2, 0, 0]])
    # theta = A^-1 b = prior mean on the bias, 0 elsewhere
    np.testing.assert_allclose(arms.theta, [[0.3, 0, 0], [0.3, 0, 0]], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(arms.count, 0.0)


def test_prior_mean_and_width_by_hand() -> None:
    arms = LinearArms.zeros(2, 3)
    arms.reset(ridge=4.0, prior_mean=0.3)
    x = np.array([1.0, 2.0, 2.0])
    # mean = 0.3 * x_0; width = sqrt(x^T x / ridge) = 3 / 2
    np.testing.assert_allclose(arms.mean(x), [0.3, 0.3], rtol=0, atol=1e-15)
    np.testing.assert_allclose(arms.width(x), [1.5, 1.5], rtol=0, atol=1e-15)


def test_one_update_by_hand() -> None:
    arms = LinearArms.zeros(2, 2)
    arms.reset(ridge=1.0, prior_mean=0.5)
    x = np.array([1.0, 1.0])
    arms.update(1, x, 1.0)
    # A = I + x x^T = [[2, 1], [1, 2]], A^-1 = [[2, -1], [-1, 2]] / 3
    np.testing.assert_allclose(arms.a_inv[1], np.array([[2.0, -1.0], [-1.0, 2.0]]) / 3.0, rtol=0, atol=1e-15)
    # b = (0.5, 0) + (1, 1) = (1.5, 1); theta = A^-1 b = (2/3, 1/6)
    np.testing.assert_allclose(arms.b[1], [1.5, 1.0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(arms.theta[1], [2 / 3, 1 / 6], rtol=0, atol=1e-15)
    # mean(x) = 5/6; width(x) = sqrt(x^T A^-1 x) = sqrt(2/3)
    assert arms.mean(x)[1] == pytest.approx(5 / 6, abs=1e-15)
    assert arms.width(x)[1] == pytest.approx(math.sqrt(2 / 3), abs=1e-15)
    # arm 0 is untouched
    np.testing.assert_array_equal(arms.a_inv[0], np.eye(2))
    np.testing.assert_array_equal(arms.count, [0.0, 1.0])
    assert arms.mean(x)[0] == 0.5
    assert arms.width(x)[0] == pytest.approx(math.sqrt(2.0))


def test_sherman_morrison_equals_direct_inverse() -> None:
    rng = np.random.default_rng(0)
    n, d, ridge, mu0 = 3, 5, 2.0, 0.3
    arms = LinearArms.zeros(n, d)
    arms.reset(ridge, mu0)
    a = np.broadcast_to(ridge * np.eye(d), (n, d, d)).copy()
    b = np.zeros((n, d))
    b[:, 0] = ridge * mu0
    count = np.zeros(n)
    for _ in range(60):
        i = int(rng.integers(n))
        x = np.concatenate([[1.0], rng.uniform(-1.0, 1.0, d - 1)])
        r = float(rng.integers(2))
        arms.update(i, x, r)
        a[i] += np.outer(x, x)
        b[i] += r * x
        count[i] += 1
    a_inv = np.linalg.inv(a)
    np.testing.assert_allclose(arms.a_inv, a_inv, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(arms.b, b, rtol=0, atol=1e-12)
    np.testing.assert_allclose(arms.theta, np.linalg.solve(a, b[..., None])[..., 0], rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(arms.count, count)

    x = np.concatenate([[1.0], rng.uniform(-1.0, 1.0, d - 1)])
    np.testing.assert_allclose(arms.mean(x), arms.theta @ x, rtol=0, atol=1e-15)
    expected_width = np.sqrt(np.einsum("i,nij,j->n", x, a_inv, x))
    np.testing.assert_allclose(arms.width(x), expected_width, rtol=1e-9)


def test_updates_write_through_views() -> None:
    """The arrays may be views of other storage (the RLModule's buffers): updates stay in it."""
    n, d = 2, 3
    storage = {"a_inv": np.zeros((n, d, d)), "b": np.zeros((n, d)), "theta": np.zeros((n, d)), "count": np.zeros(n)}
    arms = LinearArms(storage["a_inv"], storage["b"], storage["theta"], storage["count"])
    arms.reset(1.0, 0.2)
    arms.update(0, np.array([1.0, 0.5, -0.5]), 1.0)
    for name, arr in storage.items():
        assert getattr(arms, name) is arr
    assert storage["count"].tolist() == [1.0, 0.0]
    np.testing.assert_array_equal(storage["b"][0], [1.2, 0.5, -0.5])
    np.testing.assert_allclose(storage["theta"][0], storage["a_inv"][0] @ storage["b"][0], rtol=0, atol=1e-15)
