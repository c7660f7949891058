#!/usr/bin/env python
"""Embedding speed and agreement: torch sentence-transformers against onnxruntime and OpenVINO.

On a fixed sample of real catalog texts (``Entity.text()`` of ``var/catalog.sqlite``
if it exists, else of a slice built from ``data/`` with ``build_catalog(max_artists=...)``
in a temporary directory) and on short real-looking queries (hand-written ones plus
entity titles, some with a typo), it measures:

a. per single query, p50/p99 ms: torch (``MiniLMEmbedder``, ``default_torch_threads()``
   threads, today's serving path), onnxruntime fp32 and int8 (``OnnxMiniLMEmbedder``'s
   query path, ``query_threads`` default 1);
b. bulk texts/s on the sample: torch with 1 thread (today's default) and with all
   cores, onnxruntime fp32 and OpenVINO (bf16 where the CPU has it, and fp32), all
   cores, and the projected time for the full catalog;
c. agreement with the torch reference: cosine per text (min/mean) on the sample and
   the queries, and the mean overlap of each query's top-10 catalog neighbours when
   both sides come from the backend (plus the serving pair: int8 queries against a
   bulk-embedded catalog).

Writes ``<out>/embed.md``, ``embed.json`` and ``embed.png``. The ONNX models are
built (once) into ``--model-dir``. The machine is shared: compare the ratios of one
run rather than absolute figures across runs.

    .venv/bin/python scripts/bench_embed.py            # ~4 min on the 2-core box
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ltrr import constants  # noqa: E402
from ltrr.embedder import MiniLMEmbedder, default_torch_threads  # noqa: E402
from ltrr.onnx_embedder import DEFAULT_MODEL_DIR, OnnxMiniLMEmbedder, cpu_has_bf16  # noqa: E402

QUERIES = (
    "radiohead", "songs like bohemian rhapsody", "calm piano music for studying", "taylor swfit", "true crime podcast",
    "80s synth pop", "jazz trumpet", "metalica", "chill lofi beats", "hip hop from the 2000s", "sad indie songs",
    "beyonce", "workout playlist", "latin reggaeton hits", "classical music for sleep", "eminem lose yourself",
    "female vocalists electronic", "podcast about history", "daft punk", "acoustic covers", "the beatles",
    "kpop girl groups", "dark ambient", "coldplay yellow", "comedy podcast", "punk rock 90s", "french house",
    "bob marley", "news podcast daily", "rihana umbrella",
)  # fmt: skip
CATALOG_SIZE = 58_000  # entities of the full catalog, for the projection when no catalog is present


def pct(xs: Sequence[float], p: float) -> float:
    return float(np.percentile(np.asarray(xs), p)) if len(xs) else float("nan")


def catalog_texts(max_artists: int) -> tuple[list[str], list[str], str, int]:
    """(texts, titles, source, catalog size) from var/catalog.sqlite, else from a slice built from data/."""
    from ltrr.catalog.build import build_catalog
    from ltrr.catalog.store import CatalogStore

    path = Path(constants.resolve_path(constants.CATALOG_PATH))
    tmp = None
    if path.is_file():
        store, source = CatalogStore(path), str(path)
    else:
        tmp = tempfile.TemporaryDirectory()
        store = CatalogStore(Path(tmp.name) / "catalog.sqlite")
        build_catalog(store, ROOT / "data", max_artists=max_artists, progress=False)
        source = f"slice of data/ (max_artists={max_artists})"
    texts: list[str] = []
    titles: list[str] = []
    for _, entities in store.entities_since(0):
        texts += [e.text() for e in entities]
        titles += [e.title for e in entities]
    size = store.count() if tmp is None else CATALOG_SIZE
    store.close()
    if tmp is not None:
        tmp.cleanup()
    return texts, titles, source, size


def typo(word: str, rng: np.random.Generator) -> str:
    if len(word) < 4:
        return word
    i = int(rng.integers(1, len(word) - 2))
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def single_query_ms(encode: Callable[[list[str]], np.ndarray], queries: Sequence[str], rounds: int) -> list[float]:
    for q in queries[:10]:
        encode([q])  # warm-up
    out = []
    for _ in range(rounds):
        for q in queries:
            t = time.perf_counter()
            encode([q])
            out.append((time.perf_counter() - t) * 1e3)
    return out


def timed(encode: Callable[[list[str]], np.ndarray], texts: list[str]) -> tuple[np.ndarray, float]:
    encode(texts[:64])  # warm-up (OpenVINO compiles here)
    t = time.perf_counter()
    x = encode(texts)
    return x, time.perf_counter() - t


BULK_RUNS = ("torch-today", "torch-all", "onnxruntime", "openvino-bf16", "openvino-fp32")


def bulk_worker(run: str, texts_file: str, vectors_file: str, model_dir: str) -> None:
    """One bulk run in a fresh process (torch's OpenMP workers would otherwise spin against the next backend)."""
    texts = json.loads(Path(texts_file).read_text())
    cores = os.cpu_count() or 1
    encode: Callable[[list[str]], np.ndarray]
    if run.startswith("torch"):
        encode = MiniLMEmbedder(num_threads=default_torch_threads() if run == "torch-today" else cores).encode
    else:
        emb = OnnxMiniLMEmbedder(model_dir=model_dir, bulk_backend=run.split("-")[0])
        if run == "openvino-fp32":
            emb.bulk_backend = "openvino-fp32"  # no option forces fp32 on a bf16 CPU; set before the first bulk call
        encode = emb.encode_bulk
    x, secs = timed(encode, texts)
    np.save(vectors_file, x)
    print(json.dumps({"seconds": secs}))


def bulk_run(run: str, texts_file: str, model_dir: str) -> tuple[np.ndarray, float]:
    with tempfile.TemporaryDirectory() as tmp:
        vectors = str(Path(tmp) / "x.npy")
        argv = [sys.executable, __file__, "--worker", run, "--texts-file", texts_file, "--vectors-file", vectors]
        out = subprocess.run([*argv, "--model-dir", model_dir], capture_output=True, text=True, check=True)
        return np.load(vectors), float(json.loads(out.stdout.strip().splitlines()[-1])["seconds"])


def in_batches(encode: Callable[[list[str]], np.ndarray], texts: list[str], n: int = 8) -> np.ndarray:
    return np.vstack([encode(texts[s : s + n]) for s in range(0, len(texts), n)])


def overlap(q: np.ndarray, c: np.ndarray, q_ref: np.ndarray, c_ref: np.ndarray, k: int = 10) -> float:
    top = np.argsort(-(q @ c.T), axis=1)[:, :k]
    ref = np.argsort(-(q_ref @ c_ref.T), axis=1)[:, :k]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(top, ref, strict=True)]))


def cos(x: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    c = np.sum(x * ref, axis=1)
    return {"min": float(c.min()), "mean": float(c.mean())}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sample", type=int, default=2000, help="catalog texts in the bulk sample")
    ap.add_argument("--rounds", type=int, default=5, help="passes over the queries for the latency figures")
    ap.add_argument("--max-artists", type=int, default=2000, help="slice size when there is no var/catalog.sqlite")
    ap.add_argument("--model-dir", default=DEFAULT_MODEL_DIR, help="where the ONNX models are built")
    ap.add_argument("--out", default="bench-out", help="output directory")
    ap.add_argument("--worker", choices=BULK_RUNS, help=argparse.SUPPRESS)
    ap.add_argument("--texts-file", help=argparse.SUPPRESS)
    ap.add_argument("--vectors-file", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        bulk_worker(args.worker, args.texts_file, args.vectors_file, args.model_dir)
        return 0
    rng = np.random.default_rng(20261201)
    texts, titles, source, size = catalog_texts(args.max_artists)
    pick = rng.choice(len(texts), min(args.sample, len(texts)), replace=False)
    sample = [texts[i] for i in pick]
    extra = [titles[i].lower() for i in rng.choice(len(titles), 170, replace=False)]
    queries = list(QUERIES) + [" ".join(typo(w, rng) if rng.random() < 0.2 else w for w in t.split()) for t in extra]
    cores = os.cpu_count() or 1
    print(f"{len(sample)} texts from {source}; {len(queries)} queries; {cores} cores; {cpu_name()}", file=sys.stderr)

    ort = OnnxMiniLMEmbedder(model_dir=args.model_dir, bulk_backend="onnxruntime")
    tokens = [len(ids) for ids in ort._tokenize(sample)]
    torch_threads = default_torch_threads()
    bf16 = cpu_has_bf16()

    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"), "cpu": cpu_name(), "cores": cores, "bf16": bf16,
        "source": source, "sample": len(sample), "queries": len(queries), "catalog_size": size,
        "word_pieces": {"mean": float(np.mean(tokens)), "p50": pct(tokens, 50), "p99": pct(tokens, 99)},
        "query": {}, "bulk": {}, "agreement": {},
    }  # fmt: skip

    # b. bulk throughput, each run in its own process; the torch run of today is the reference
    names = {
        "torch-today": f"torch ({torch_threads} thread, today)", "torch-all": f"torch ({cores} threads)",
        "onnxruntime": f"onnxruntime fp32 ({cores} threads)", "openvino-bf16": f"openvino bf16 ({cores} threads)",
        "openvino-fp32": f"openvino f32 ({cores} threads)",
    }  # fmt: skip
    runs = [r for r in BULK_RUNS if (r != "torch-all" or cores != torch_threads) and (r != "openvino-bf16" or bf16)]
    bulk_vectors: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        texts_file = str(Path(tmp) / "texts.json")
        Path(texts_file).write_text(json.dumps(sample))
        today = None
        for run in runs:
            x, secs = bulk_run(run, texts_file, args.model_dir)
            rate = len(sample) / secs
            today = today or rate
            bulk_vectors[names[run]] = x
            report["bulk"][names[run]] = {
                "texts_per_s": rate, "projected_min": size / rate / 60, "speedup_vs_today": rate / today,
            }  # fmt: skip
            print(f"bulk {names[run]}: {rate:.1f} texts/s, {size} in {size / rate / 60:.1f} min", file=sys.stderr)
    ref_c = bulk_vectors[names["torch-today"]]

    # a. single-query latency (torch on today's thread count; onnxruntime on its query threads)
    torch1 = MiniLMEmbedder()
    ref_q = torch1.encode(queries)
    onnx = {p: OnnxMiniLMEmbedder(model_dir=args.model_dir, query_precision=p) for p in ("fp32", "int8")}
    lat = {f"torch ({torch_threads} thread)": single_query_ms(torch1.encode, queries, args.rounds)}
    for p, emb in onnx.items():
        lat[f"onnxruntime {p} ({emb.query_threads} thread)"] = single_query_ms(emb.encode_queries, queries, args.rounds)
    for name, ms in lat.items():
        report["query"][name] = {"p50_ms": pct(ms, 50), "p99_ms": pct(ms, 99), "calls": len(ms)}
        print(f"query {name}: p50 {pct(ms, 50):.2f} ms, p99 {pct(ms, 99):.2f} ms", file=sys.stderr)

    # c. agreement with the torch reference
    q_vecs = {p: emb.encode_queries(queries) for p, emb in onnx.items()}
    c_vecs = {p: in_batches(emb.encode_queries, sample) for p, emb in onnx.items()}
    for p in onnx:
        report["agreement"][f"onnxruntime {p} (query path)"] = {
            "cos_catalog": cos(c_vecs[p], ref_c), "cos_queries": cos(q_vecs[p], ref_q),
            "top10_overlap": overlap(q_vecs[p], c_vecs[p], ref_q, ref_c),
        }  # fmt: skip
    for name, x in bulk_vectors.items():
        if name.startswith("torch"):
            continue
        report["agreement"][f"{name.split(' (')[0]} (bulk path)"] = {
            "cos_catalog": cos(x, ref_c), "top10_overlap": overlap(ref_q, x, ref_q, ref_c),
        }  # fmt: skip
    serving = names["openvino-bf16" if bf16 else "onnxruntime"]
    report["agreement"][f"serving: int8 queries x {serving.split(' (')[0]} catalog"] = {
        "top10_overlap": overlap(q_vecs["int8"], bulk_vectors[serving], ref_q, ref_c)
    }
    for name, a in report["agreement"].items():
        print(f"agreement {name}: {json.dumps(a)}", file=sys.stderr)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "embed.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "embed.md").write_text(markdown(report))
    plot(report, out / "embed.png")
    print(markdown(report))
    return 0


def markdown(r: dict[str, Any]) -> str:
    wp = r["word_pieces"]
    lines = [
        f"# Embedding benchmark ({r['date']})", "",
        f"{r['cores']} cores, {r['cpu']} (bf16: {'yes' if r['bf16'] else 'no'}). Sample: {r['sample']} texts from "
        f"{r['source']} (word pieces mean {wp['mean']:.1f}, p50 {wp['p50']:.0f}, p99 {wp['p99']:.0f}); "
        f"{r['queries']} queries. Projection for {r['catalog_size']} entities.", "",
        "| single query | p50 ms | p99 ms |", "|---|---:|---:|",
        *(f"| {n} | {v['p50_ms']:.2f} | {v['p99_ms']:.2f} |" for n, v in r["query"].items()), "",
        "| bulk | texts/s | projected min | x today |", "|---|---:|---:|---:|",
        *(
            f"| {n} | {v['texts_per_s']:.1f} | {v['projected_min']:.1f} | {v['speedup_vs_today']:.2f} |"
            for n, v in r["bulk"].items()
        ),
        "", "| agreement with torch | cos catalog min / mean | cos queries min / mean | top-10 overlap |",
        "|---|---|---|---:|",
    ]  # fmt: skip
    for n, a in r["agreement"].items():
        cc, cq = a.get("cos_catalog"), a.get("cos_queries")
        fmt = lambda c: f"{c['min']:.5f} / {c['mean']:.6f}" if c else "-"  # noqa: E731
        lines.append(f"| {n} | {fmt(cc)} | {fmt(cq)} | {a['top10_overlap']:.3f} |")
    return "\n".join(lines) + "\n"


def plot(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    names = list(r["query"])
    y = np.arange(len(names))
    a.barh(y - 0.2, [r["query"][n]["p50_ms"] for n in names], 0.4, label="p50")
    a.barh(y + 0.2, [r["query"][n]["p99_ms"] for n in names], 0.4, label="p99")
    a.set_yticks(y, names)
    a.invert_yaxis()
    a.set_xlabel("ms per single query")
    a.axvline(3.0, color="grey", ls="--", lw=0.8)
    a.legend()
    names = list(r["bulk"])
    y = np.arange(len(names))
    b.barh(y, [r["bulk"][n]["texts_per_s"] for n in names])
    b.set_yticks(y, names)
    b.invert_yaxis()
    b.set_xlabel("bulk texts/s")
    fig.suptitle(f"all-MiniLM-L6-v2 on {r['cores']} cores, {r['cpu']} ({r['date']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
