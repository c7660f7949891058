"""Simulated users against the running stack: does the policy learn to retrieve on the real system?

Each round a simulated user wants one catalog entity and types a query for it:

* ``name``:    an artist's name, with an adjacent-letter typo a third of the time;
* ``like``:    "artists like S" wanting S's most similar artist (a Last.fm `similar` edge);
* ``podcast``: six words from a podcast's description;
* ``track``:   a track's title and artist.

The policy decides (nothing is forced); the user clicks the wanted entity if it is among the
``--shown`` results. Per round the script records whether the wanted entity was in the union of
the called strategies' candidates (from the event log), the strategies called and the decision's
cost, and writes a learning curve. Afterwards ``ltrr ope`` can evaluate other policies on the log.

    .venv/bin/python scripts/simulate_users.py [--rounds 800] [--out bench-out]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
KINDS = ("name", "like", "podcast", "track")


def typo(text: str, rng: random.Random) -> str:
    letters = [i for i in range(len(text) - 1) if text[i].isalpha() and text[i + 1].isalpha()]
    if not letters:
        return text
    i = rng.choice(letters)
    return text[:i] + text[i + 1] + text[i] + text[i + 2 :]


def intents(catalog_path: str, seed: int) -> dict[str, list[tuple[str, str]]]:
    """(query, wanted entity id) pairs per kind, from the catalog."""
    from ltrr.catalog.store import CatalogStore

    rng = random.Random(seed)
    store = CatalogStore(catalog_path)
    entities = [e for _, batch in store.entities_since(0, 5000) for e in batch]
    by_id = {e.entity_id: e for e in entities}
    artists = sorted((e for e in entities if e.entity_type == "artist"), key=lambda e: -e.popularity)[:2000]
    similar: dict[str, tuple[float, str]] = {}
    for r in store.relations_since(0):
        if r.kind == "similar" and r.dst in by_id and (r.src not in similar or r.weight > similar[r.src][0]):
            similar[r.src] = (r.weight, r.dst)
    store.close()
    ok = [a for a in artists if a.title.isascii()]
    out: dict[str, list[tuple[str, str]]] = {k: [] for k in KINDS}
    for a in ok:
        q = a.title.lower()
        out["name"].append((typo(q, rng) if rng.random() < 1 / 3 else q, a.entity_id))
        if a.entity_id in similar:
            out["like"].append((f"artists like {q}", similar[a.entity_id][1]))
    for p in (e for e in entities if e.entity_type == "podcast" and len(e.description.split()) >= 12):
        words = [w for w in p.description.split() if w.isalpha()]
        if len(words) >= 8:
            start = rng.randrange(0, len(words) - 6)
            out["podcast"].append((" ".join(words[start : start + 6]).lower(), p.entity_id))
    tracks = sorted(
        (e for e in entities if e.entity_type == "track" and e.title.isascii()), key=lambda e: -e.popularity
    )
    for t in tracks[:2000]:
        out["track"].append((f"{t.title} {t.subtitle}".lower()[:120], t.entity_id))
    for v in out.values():
        rng.shuffle(v)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default="127.0.0.1:9000")
    ap.add_argument("--config", default="deployments/serve_config.yaml")
    ap.add_argument("--rounds", type=int, default=800)
    ap.add_argument("--shown", type=int, default=10, help="results the user looks at")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench-out")
    args = ap.parse_args()
    os.chdir(ROOT)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ltrr.appconfig_io import load_app_config
    from ltrr.client import LtrrClient
    from ltrr.eventlog import SQLiteEventLog

    cfg = load_app_config(args.config)
    pools = intents(cfg.catalog_path, args.seed)
    counters = {k: 0 for k in KINDS}
    rows: list[dict[str, Any]] = []
    log = SQLiteEventLog(cfg.events_path)
    t0 = time.perf_counter()
    with LtrrClient(args.target, timeout=30) as c:
        for i in tqdm(range(args.rounds), desc="simulated users", unit="search"):
            kind = KINDS[i % len(KINDS)]
            query, wanted = pools[kind][counters[kind] % len(pools[kind])]
            counters[kind] += 1
            resp = c.search(query, k=args.shown)
            shown = [r.entity_id for r in resp.results]
            if wanted in shown:
                c.feedback(
                    resp.request_id, wanted, "click", position=shown.index(wanted) + 1, event_id=uuid.uuid4().hex
                )
            event = log.search(resp.request_id)
            cands = event.candidates if event and event.candidates else {}
            rows.append(
                {
                    "round": i,
                    "kind": kind,
                    "policy_version": resp.policy_version,
                    "in_union": any(wanted in ids for ids in cands.values()),
                    "clicked": wanted in shown,
                    "called": sorted(s.strategy for s in resp.strategies if s.candidates_requested > 0),
                    "candidates": sum(s.candidates_requested for s in resp.strategies),
                    "cost": (event.decision or {}).get("cost", 0.0) if event else 0.0,
                }
            )
    log.close()
    wall = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    window = max(20, args.rounds // 10)
    n = len(rows)
    blocks = [rows[j : j + window] for j in range(0, n, window)]
    lines = [
        f"{n} simulated searches in {wall:.0f} s ({n / wall:.1f}/s), user looks at the top {args.shown}; "
        f"final {rows[-1]['policy_version']}.",
        "",
        "| rounds | recall (wanted in union) | clicked | strategies called | candidates | "
        + " | ".join(f"{k} recall" for k in KINDS)
        + " |",
        "|---|---|---|---|---|" + "---|" * len(KINDS),
    ]
    for b in blocks:
        per_kind = defaultdict(list)
        for r in b:
            per_kind[r["kind"]].append(r["in_union"])
        lines.append(
            f"| {b[0]['round']}-{b[-1]['round']} | {np.mean([r['in_union'] for r in b]):.2f} | "
            f"{np.mean([r['clicked'] for r in b]):.2f} | {np.mean([len(r['called']) for r in b]):.2f} | "
            f"{np.mean([r['candidates'] for r in b]):.0f} | "
            + " | ".join(f"{np.mean(per_kind[k]):.2f}" if per_kind[k] else "-" for k in KINDS)
            + " |"
        )
    lines.append("")
    called_late = defaultdict(lambda: defaultdict(int))
    for r in rows[-window * 2 :]:
        for s in r["called"]:
            called_late[r["kind"]][s] += 1
    lines.append("Strategies called per query kind, last " + str(window * 2) + " searches:")
    lines.append("")
    for k in KINDS:
        tot = sum(1 for r in rows[-window * 2 :] if r["kind"] == k)
        share = ", ".join(f"{s} {v / max(tot, 1):.0%}" for s, v in sorted(called_late[k].items()))
        lines.append(f"- {k}: {share}")
    text = "\n".join(lines)
    print(text)
    (out / "traffic.md").write_text(text + "\n")
    (out / "traffic.json").write_text(json.dumps(rows))
    fig, ax = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    xs = np.arange(n)
    roll = np.convolve([r["in_union"] for r in rows], np.ones(window) / window, mode="valid")
    ax[0].plot(xs[window - 1 :], roll, label=f"candidate recall (rolling {window})")
    clk = np.convolve([r["clicked"] for r in rows], np.ones(window) / window, mode="valid")
    ax[0].plot(xs[window - 1 :], clk, label="clicked (in the shown top)")
    ax[0].set_ylabel("rate")
    ax[0].legend()
    cand = np.convolve([r["candidates"] for r in rows], np.ones(window) / window, mode="valid")
    ax[1].plot(xs[window - 1 :], cand, color="tab:red")
    ax[1].set_ylabel("candidates requested")
    ax[1].set_xlabel("search")
    fig.suptitle("Simulated users on the running stack: the policy learning online")
    fig.tight_layout()
    fig.savefig(out / "traffic.png", dpi=120)
    print(f"wrote {out}/traffic.md, traffic.json, traffic.png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
