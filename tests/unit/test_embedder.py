"""Embedders, their registry and the embedding cache (no model download, no server)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest

from ltrr.embedder import (
    EMBEDDER_NAMES,
    EMBEDDERS,
    CachedEmbedder,
    Embedder,
    EmbeddingCache,
    HashingEmbedder,
    cache_key,
    default_torch_threads,
    make_embedder,
)
from ltrr.errors import ConfigError

# crc32 of the features, by hand: "w:a" = 2984454256 (bit 31 set: sign -, 2984454256 % 8 = 0),
# "w:b" = 686455242 (+, col 2), "b:a b" = 3312143924 (-, col 4), "c:<a>" = 399555068 (+, col 4),
# "c:<b>" = 1023273535 (+, col 7), "w:rock" = 1517901891 (+, col 3), "w:jazz" = 888832979 (+, col 3),
# "<empty>" = 3429859913 (-, col 1).


def test_hashing_exact_vector_with_all_feature_kinds() -> None:
    # weights 1 (word), 0.5 (bigram), 0.25 (char trigram); "a b" has the trigrams "<a>" and "<b>"
    x = HashingEmbedder(8).encode(["a b"])
    raw = np.array([-1.0, 0, 1.0, 0, -0.5 + 0.25, 0, 0, 0.25])
    np.testing.assert_allclose(x[0], raw / math.sqrt(2.125), rtol=1e-6)


def test_hashing_exact_vectors_words_only() -> None:
    h = HashingEmbedder(8, bigram_weight=0.0, char_weight=0.0)
    x = h.encode(["ROCK", "rock jazz", "a b", "", "?!"])
    e = np.eye(8, dtype=np.float32)
    np.testing.assert_allclose(x[0], e[3])  # case-folded
    np.testing.assert_allclose(x[1], e[3])  # two words colliding in one column, same sign
    np.testing.assert_allclose(x[2], (e[2] - e[0]) / math.sqrt(2), rtol=1e-6)
    np.testing.assert_allclose(x[3], -e[1])  # no word: the "<empty>" feature
    np.testing.assert_allclose(x[4], -e[1])


def test_hashing_encode_matches_its_feature_list() -> None:
    h = HashingEmbedder(64)
    text = "Ça va: Tiësto ♥ EDM LOVE 2020 ﬁne"
    feats = h.features(text)
    assert ("w:fine", 1.0) in feats  # NFKC turns the ligature into "fi"
    assert ("b:2020 fine", 0.5) in feats
    assert ("c:<ça", 0.25) in feats
    import zlib

    v = np.zeros(64)
    for f, w in feats:
        c = zlib.crc32(f.encode())
        v[c % 64] += -w if c & 0x80000000 else w
    np.testing.assert_allclose(h.encode([text])[0], v / np.linalg.norm(v), atol=1e-6)


def test_hashing_shape_dtype_and_unit_norm() -> None:
    h = HashingEmbedder()
    texts = ["Radiohead. artist. alternative rock", "", "   ", "x" * 5000, "日本語のタイトル", "a"] * 3
    x = h.encode(texts)
    assert x.shape == (18, 384) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-6)
    assert h.encode([]).shape == (0, 384)
    big = h.encode([f"word{i} other{i % 7}" for i in range(20_000)])  # crosses the internal chunk size
    np.testing.assert_allclose(big[10_000], h.encode(["word10000 other4"])[0], atol=1e-7)


def test_hashing_is_deterministic_across_instances_and_processes() -> None:
    texts = ["Bohemian Rhapsody. Queen. track", "Miles Davis. artist. jazz"]
    a = HashingEmbedder().encode(texts)
    np.testing.assert_array_equal(a, HashingEmbedder().encode(texts))
    code = (
        "import sys, numpy as np; from ltrr.embedder import HashingEmbedder;"
        f"sys.stdout.write(HashingEmbedder().encode({texts!r}).tobytes().hex())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    np.testing.assert_array_equal(np.frombuffer(bytes.fromhex(out.stdout), dtype=np.float32).reshape(2, 384), a)


def test_hashing_shared_words_are_closer() -> None:
    x = HashingEmbedder().encode(["indie rock band", "indie rock music", "smooth jazz trumpet"])
    assert float(x[0] @ x[1]) > 0.5 > float(x[0] @ x[2])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dim": 4}, "`dim` must be an integer in [8, 65536], got 4"),
        ({"dim": 384.0}, "`dim` must be an integer in [8, 65536], got 384.0"),
        ({"bigram_weight": -1.0}, "`bigram_weight` must be >= 0, got -1.0"),
    ],
)
def test_hashing_config_errors(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        HashingEmbedder(**kwargs)  # type: ignore[arg-type]
    assert str(exc.value) == message


@pytest.mark.parametrize(
    ("texts", "message"),
    [("abc", "`texts` must be a sequence of str, got a single str"), (["ok", 3], "`texts[1]` must be str, got int")],
)
def test_encode_input_errors(texts: Sequence[str], message: str) -> None:
    with pytest.raises(TypeError) as exc:
        HashingEmbedder().encode(texts)
    assert str(exc.value) == message


def test_registry_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ConfigError) as exc:
        make_embedder("bert")
    assert str(exc.value) == "unknown embedder 'bert'; valid: minilm, hashing, minilm-onnx"
    assert EMBEDDER_NAMES == ("minilm", "hashing", "minilm-onnx")


@pytest.mark.parametrize(
    # The MiniLM embedders load the real model (minilm-onnx also builds it into var/models); its unit tests are in
    # test_embedder_onnx.py.
    "name", [pytest.param(n, marks=pytest.mark.integration) if n.startswith("minilm") else n for n in EMBEDDERS]
)
def test_every_registered_embedder_builds_and_encodes(name: str) -> None:
    emb = make_embedder(name)
    assert isinstance(emb, Embedder)
    assert emb.dim == 384 and emb.name
    x = emb.encode(["calm piano music", "calm piano pieces", "death metal"])
    assert x.shape == (3, 384) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-5)
    assert float(x[0] @ x[1]) > float(x[0] @ x[2])


def test_default_torch_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LTRR_TORCH_THREADS", "3")
    assert default_torch_threads() == 3
    monkeypatch.delenv("LTRR_TORCH_THREADS")
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert default_torch_threads() == 1
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert default_torch_threads() == 4
    monkeypatch.setenv("LTRR_TORCH_THREADS", "two")
    with pytest.raises(ConfigError) as exc:
        default_torch_threads()
    assert str(exc.value) == "LTRR_TORCH_THREADS must be a positive integer, got 'two'"


# -- cache -------------------------------------------------------------------------
class CountingEmbedder:
    """A fake embedder that records every batch it is asked to encode."""

    def __init__(self, name: str = "fake", dim: int = 4) -> None:
        self.name = name
        self.dim = dim
        self.calls: list[list[str]] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        x = np.array([[len(t), 1.0, 0.0, 0.0][: self.dim] for t in texts], dtype=np.float32).reshape(-1, self.dim)
        return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_cache_key_is_sha1_of_model_and_text() -> None:
    assert cache_key("m", "a") == "1f1d758cfbb35f67847cec42b028bd081eb037f6"  # sha1(b"m\x1fa")
    assert cache_key("m2", "a") != cache_key("m", "a")


def test_cache_hit_avoids_re_encoding(tmp_path: Path) -> None:
    inner = CountingEmbedder()
    emb = CachedEmbedder(inner, EmbeddingCache(tmp_path / "e.sqlite"))
    first = emb.encode(["ab", "abc", "ab"])
    assert inner.calls == [["ab", "abc"]]  # misses are deduplicated
    assert (emb.misses, emb.hits) == (2, 1)
    again = emb.encode(["abc", "ab"])
    assert inner.calls == [["ab", "abc"]]
    np.testing.assert_array_equal(again, first[[1, 0]])
    emb.encode(["ab", "new"])
    assert inner.calls == [["ab", "abc"], ["new"]]
    assert (emb.misses, emb.hits) == (3, 4)
    emb.cache.close()


def test_cache_persists_and_is_keyed_by_model(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "e.sqlite"
    a = CachedEmbedder(CountingEmbedder("m1"), EmbeddingCache(path))
    a.encode(["x", "yy"])
    a.cache.close()
    inner = CountingEmbedder("m1")
    b = CachedEmbedder(inner, EmbeddingCache(path))
    b.encode(["yy", "x"])
    assert inner.calls == []
    other = CountingEmbedder("m2")
    c = CachedEmbedder(other, EmbeddingCache(path))
    c.encode(["x"])
    assert other.calls == [["x"]]
    assert len(c.cache) == 3
    wide = CountingEmbedder("m1", dim=3)  # same name, other dim: stored rows are not reused
    d = CachedEmbedder(wide, EmbeddingCache(path))
    assert d.encode(["x"]).shape == (1, 3) and wide.calls == [["x"]]
    for emb in (b, c, d):
        emb.cache.close()
