"""Where ltrr live falls short of issue 8's targets, per saved regret run, over the second half of its stream.

For each run (a `scripts/bench_regret.py` output folder, with its full-information log):

* **Regret headroom**: live's regret and the best static plan's, and the regret of a router that knows each
  query's group and plays that group's best plan in hindsight (`ltrr.sim.gap.router_regret`), by the query kind
  (which the harness knows and the policy does not) and by the query class the policy saw (its `class.*` context
  feature, `+tag` when query understanding recognised a tag or genre).
* **Recall**: the hits live needed for 0.98x of every strategy at max's recall, its misses that all-at-max
  catches by query kind and cause (`ltrr.sim.gap.shortfall`), and per group the best raise of each strategy's
  budget on every query of the group with its extra hits and net value (`ltrr.sim.gap.additions`).

With `--lastfm DIR` (the Last.fm data folder, e.g. `data`), it also counts, for the tag queries, how many tie the
wanted artist to the tag through an imported (not held-out) user's tag assignment: the only link a catalog-side
tag index could ever use.

    .venv/bin/python scripts/policy_gap.py bench-out/regret-seed2 [more runs] [--lastfm data] [--out FILE]

Prints markdown and writes it to --out (default: policy-gap.md in the first run's folder).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shlex
import sys
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_report import run_space  # noqa: E402

from ltrr.appconfig_io import load_app_config  # noqa: E402
from ltrr.sim import benchreport as br  # noqa: E402
from ltrr.sim.gap import NOT_CALLED, TOO_SMALL, additions, query_class, router_regret, shortfall  # noqa: E402
from ltrr.sim.regret import STATIC  # noqa: E402
from ltrr.sim.report import LIVE  # noqa: E402


def contexts(run: Path) -> dict[int, dict[str, float]]:
    """Query index -> the context features the live policy saw, from the run's full-information log."""
    out = {}
    with gzip.open(run / "regret-fullinfo.jsonl.gz", "rt") as fh:
        for line in fh:
            d = json.loads(line)
            out[int(d["index"])] = {k: float(v) for k, v in d["context"].items()}
    return out


def tag_ties(lastfm: Path) -> dict[str, Counter[str]]:
    """Folded tag text -> artist entity id -> imported users' assignments of that tag to that artist."""
    from ltrr.catalog.lastfm import split_held_out
    from ltrr.catalog.normalize import artist_id_for_key, normalize_name, normalize_tag
    from ltrr.catalog.readers import read_lastfm

    lfm = read_lastfm(lastfm)
    imported, _ = split_held_out(lfm)
    entity = {a: artist_id_for_key(normalize_name(n)) for a, n in lfm.artist_names.items()}
    ties: dict[str, Counter[str]] = defaultdict(Counter)
    for _, a, t in imported.tag_assignments.tolist():
        if a in entity:
            ties[normalize_tag(lfm.tags[t])][entity[a]] += 1
    return ties


def run_lines(run: Path, cfg: Any, ties: dict[str, Counter[str]] | None) -> list[str]:
    from ltrr.catalog.normalize import normalize_tag

    data = json.loads((run / "regret.json").read_text())
    space, default_k = run_space(cfg, data)
    scored = br.score_saved(space, data, default_k)
    t = len(scored.records)
    half = np.arange(t) >= t // 2
    sf = shortfall(scored, LIVE, half)
    ctx = contexts(run)
    kinds = [r.kind for r in scored.records]
    classes = [query_class(ctx.get(r.index, {})) for r in scored.records]
    table = {p.policy: p for p in scored.table(half)}
    live, static = table[LIVE].regret, table[STATIC].regret
    by_class, by_kind = router_regret(scored, classes, half), router_regret(scored, kinds, half)
    lines = [
        f"## `{run.name}`: queries {t // 2 + 1:,}–{t:,}",
        "",
        f"- **Command**: `{data['meta'].get('command', '?')}`",
        f"- **Run**: {data['meta'].get('date', '?')}, {data['meta'].get('machine', '?')}",
        "",
        "| regret over these queries | regret | / best static |",
        "|---|---:|---:|",
        f"| ltrr live | {live:.1f} | {live / static:.2f}× |",
        f"| best static plan of the run | {static:.1f} | 1.00× |",
        f"| router on the query class the policy saw, best plan per class in hindsight | {by_class:.1f} | "
        f"{by_class / static:.2f}× |",
        f"| router on the query kind (hidden from the policy), best plan per kind in hindsight | {by_kind:.1f} | "
        f"{by_kind / static:.2f}× |",
        "",
        f"- **Recall**: live {sf.hits / sf.n:.3f}, every strategy at max {sf.top_hits / sf.n:.3f}: "
        f"{sf.ratio:.3f}×; {sf.target:.2f}× needs {sf.needed} more hits of {sf.n:,} queries.",
        "",
        "Live misses that every strategy at max catches:",
        "",
        f"| kind | {NOT_CALLED} | {TOO_SMALL} |",
        "|---|---:|---:|",
    ]
    for kind in sorted({k for k, _ in sf.misses}):
        lines.append(f"| {kind} | {sf.misses.get((kind, NOT_CALLED), 0)} | {sf.misses.get((kind, TOO_SMALL), 0)} |")
    lines += [
        f"| all | {sum(v for (_, c), v in sf.misses.items() if c == NOT_CALLED)} | "
        f"{sum(v for (_, c), v in sf.misses.items() if c == TOO_SMALL)} |",
        "",
    ]
    for title, groups in (
        ("query kind (what the harness knows)", kinds),
        ("query class (what the policy saw)", classes),
    ):
        lines += [
            f"Best single budget raise on every query of each {title}, on top of live's plan, per strategy "
            "(`k: extra hits / net value`):",
            "",
            "| group | queries | kinds | " + " | ".join(space.strategies) + " |",
            "|---|---:|---|" + "---:|" * len(space.strategies),
        ]
        for g, adds in additions(scored, LIVE, groups, half).items():
            in_group = Counter(r.kind for r, h, gr in zip(scored.records, half, groups, strict=True) if h and gr == g)
            mix = ", ".join(f"{k} {v}" for k, v in in_group.most_common())
            cells = []
            for s in space.strategies:
                best = next(a for a in adds if a.strategy == s)  # adds is best net first
                cells.append(f"{best.k}: +{best.hits} / {best.net:+.1f}")
            lines.append(f"| {g} | {adds[0].n} | {mix} | " + " | ".join(cells) + " |")
        lines.append("")
    if ties is not None:
        seen: Counter[str] = Counter()
        for r, h in zip(scored.records, half, strict=True):
            if not h or r.kind != "tag":
                continue
            recognised = query_class(ctx.get(r.index, {})).endswith("+tag")
            tied = ties.get(normalize_tag(r.text), Counter()).get(r.wanted, 0) > 0
            seen[f"{'recognised' if recognised else 'unrecognised'}, {'tied' if tied else 'never tied'}"] += 1
        lines += [
            "Tag queries by whether query understanding recognised the tag, and whether any imported user tied the "
            "wanted artist to it:",
            "",
            "| tag queries | count |",
            "|---|---:|",
            *[f"| {k} | {v} |" for k, v in sorted(seen.items())],
            "",
        ]
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="bench_regret output folders")
    ap.add_argument("--lastfm", type=Path, default=None, help="the Last.fm data folder, for the tag ties")
    ap.add_argument("--config", default=os.environ.get("LTRR_CONFIG", "deployments/serve_config.yaml"))
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    cfg = load_app_config(args.config)
    ties = tag_ties(args.lastfm) if args.lastfm else None
    command = " ".join(["scripts/policy_gap.py", *(shlex.quote(a) for a in sys.argv[1:])])
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Where ltrr live falls short of issue 8's targets",
        "",
        f"Generated by `{command}` on {when}, offline from the saved runs; each run's own command, date and "
        "machine are in its section. Every figure is over the second half of the run's stream.",
        "",
    ]
    for run in args.runs:
        lines += run_lines(run, cfg, ties)
    text = "\n".join(lines) + "\n"
    print(text)
    out = args.out or args.runs[0] / "policy-gap.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
