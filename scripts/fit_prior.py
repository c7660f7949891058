"""Fit the retrieval policy's prior (`policy.prior_path`) on full-information searches of predicted queries.

The queries are drawn like the regret harness's (`ltrr.sim.users`: names, misspellings, tags,
"artists like X", track titles, podcast words) but from the *imported* Last.fm users, never the
held-out ones the harness serves, half of them under their `lfm:<id>` (with the imported profile)
and half under an unknown id (as a new user starts). Each is searched once with every strategy
forced at the ladder's largest budget (`budgets`, `explain`): the rank of the wanted entity in each
strategy's own list gives every arm's reward (`ltrr.bandit.prior.fit_prior`). Features that
describe the deployment's own history (`hist.*`, `mem_*`) are left out of the prior. Forced
searches are not learned from and do not count in query statistics, so this leaves the running
policy as it was.

    make up
    .venv/bin/python scripts/fit_prior.py [--queries 2000] [--seed 1] [--out deployments/policy_prior.npz]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default="127.0.0.1:9000")
    ap.add_argument("--config", default="deployments/serve_config.yaml")
    ap.add_argument("--data-dir", default="data")
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1, help="not the harness's seed 0")
    ap.add_argument("--out", default="deployments/policy_prior.npz")
    args = ap.parse_args()
    os.chdir(ROOT)
    from ltrr.appconfig_io import load_app_config
    from ltrr.bandit import ContextFeaturizer
    from ltrr.bandit.prior import fit_prior
    from ltrr.catalog.readers import read_lastfm
    from ltrr.catalog.store import CatalogStore
    from ltrr.client import LtrrClient
    from ltrr.sim.users import QueryMix, QueryStream, build_world

    cfg = load_app_config(args.config)
    strategies = tuple(cfg.enabled())
    ladder = cfg.policy.ladder
    store = CatalogStore(cfg.catalog_path)
    try:
        world = build_world(read_lastfm(ROOT / args.data_dir), store, population="imported")
        n_entities = store.count()
    finally:
        store.close()
    queries = QueryStream(world, QueryMix(), seed=args.seed).generate(args.queries)
    top = {s: ladder[-1] for s in strategies}
    records = []
    t0 = time.perf_counter()
    with LtrrClient(args.target, timeout=30) as client:
        for q in tqdm(queries, desc="full-information searches", unit="q"):
            lfm_id = q.user_id.split(":", 1)[1]
            user = f"lfm:{lfm_id}" if q.index % 2 == 0 else f"prior:{lfm_id}"
            resp = client.search(q.text, k=10, user_id=user, explain=True, budgets=top)
            lists = {c.strategy: list(c.candidate_ids) for c in resp.strategies}
            ranks = {s: (lists[s].index(q.wanted) + 1 if q.wanted in lists.get(s, []) else None) for s in strategies}
            records.append((dict(resp.context_features), ranks))
    names = [n for n in ContextFeaturizer(strategies).names if not n.startswith(("hist.", "mem_"))]
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    provenance = (
        f"scripts/fit_prior.py {when}: {len(records)} full-information searches (every strategy at k={ladder[-1]}) "
        f"of queries drawn from the imported Last.fm HetRec users (seed {args.seed}, mix {QueryMix().weights()}), "
        f"catalog of {n_entities} entities"
    )
    prior = fit_prior(records, strategies, ladder, names, provenance)
    path = prior.save(args.out)
    rates = prior.hit_rates().reshape(len(strategies), len(ladder) - 1)
    print(f"wrote {path} from {len(records)} searches in {time.perf_counter() - t0:.0f} s; mean hit rate per arm:")
    for s, row in zip(strategies, rates, strict=True):
        print(f"  {s:8s} " + "  ".join(f"@{k}: {r:.2f}" for k, r in zip(ladder[1:], row, strict=True)))
    if prior.pair_overlap is not None:
        print("how the strategies' hits overlap (1 nested, 0 independent, -1 disjoint; policy.pair_overlap: prior):")
        for i, a in enumerate(strategies):
            for j in range(i + 1, len(strategies)):
                print(f"  {a}+{strategies[j]}: {prior.pair_overlap[i, j]:+.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
