"""Artist-artist similarity from co-listening (item-based collaborative filtering).

Let :math:`X \\in \\mathbb{R}^{A \\times U}` hold, for artist :math:`a` and user
:math:`u`, the log-scaled listening count :math:`x_{au} = \\log(1 + w_{au})`
(0 if the user never played the artist). Let :math:`c_{ab}` be the number of
users who listened to both :math:`a` and :math:`b`. The similarity is the cosine
of the artists' user vectors, damped when few users support it
(significance weighting, Herlocker et al., SIGIR 1999):

.. math::

    s_{ab} = \\frac{x_a \\cdot x_b}{\\lVert x_a \\rVert \\, \\lVert x_b \\rVert}
             \\cdot \\frac{\\min(c_{ab}, \\gamma)}{\\gamma}

with :math:`\\gamma = 5`. Each artist keeps its ``top_k`` most similar artists
(ties broken by the smaller index), weights rounded to 6 decimals so that
rebuilds are bit-identical. Sparse products keep this fast: the full Last.fm
matrix (17.5k artists x 1.9k users, 93k plays) takes well under a second.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

SIGNIFICANCE_GAMMA = 5.0


def cosine_top_k(
    artist_idx: np.ndarray,
    user_idx: np.ndarray,
    weights: np.ndarray,
    n_artists: int,
    top_k: int = 20,
    gamma: float = SIGNIFICANCE_GAMMA,
) -> list[list[tuple[int, float]]]:
    """Return, for each artist ``0..n_artists-1``, its ``top_k`` neighbours ``(index, s_ab)``.

    ``artist_idx``, ``user_idx``, ``weights``: 1-D arrays of equal length ``n``,
    one listening count per (artist, user) pair (duplicates are summed).
    Neighbours are sorted by similarity descending; only ``s_ab > 0`` is kept.
    """
    if n_artists == 0 or len(artist_idx) == 0:
        return [[] for _ in range(n_artists)]
    _, users = np.unique(user_idx, return_inverse=True)
    n_users = int(users.max()) + 1
    counts = sp.csr_matrix(
        (np.asarray(weights, dtype=np.float64), (np.asarray(artist_idx), users)), shape=(n_artists, n_users)
    )
    counts.sum_duplicates()
    x = counts.copy()
    x.data = np.log1p(x.data)
    binary = counts.copy()
    binary.data = np.ones_like(binary.data)
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    xn = sp.diags(1.0 / norms) @ x
    sims = (xn @ xn.T).tocsr()
    damp = (binary @ binary.T).tocsr()
    damp.data = np.minimum(damp.data, gamma) / gamma
    sims = sims.multiply(damp).tocsr()
    sims.sort_indices()
    rows = np.repeat(np.arange(n_artists, dtype=np.int64), np.diff(sims.indptr))
    cols = sims.indices.astype(np.int64)
    vals = np.round(sims.data, 6)
    keep = (rows != cols) & (vals > 0)
    rows, cols, vals = rows[keep], cols[keep], vals[keep]
    # One stable sort on a single float key: by row, then similarity descending
    # (0 < s <= 1 + eps < 4), then column (the CSR order, kept by stability).
    order = np.argsort(rows * 4.0 - vals, kind="stable")
    rows, cols, vals = rows[order], cols[order], vals[order]
    starts = np.searchsorted(rows, np.arange(n_artists + 1))
    rank = np.arange(len(rows)) - starts[rows]
    top = rank < top_k
    rows, cols, vals = rows[top], cols[top], vals[top]
    bounds = np.searchsorted(rows, np.arange(n_artists + 1))
    col_list, val_list = cols.tolist(), vals.tolist()
    return [
        list(zip(col_list[bounds[a] : bounds[a + 1]], val_list[bounds[a] : bounds[a + 1]], strict=True))
        for a in range(n_artists)
    ]
