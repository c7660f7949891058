r"""The policy learner: the one place parameters change (RLlib's Learner, to the deciders' EnvRunners).

One replica. Two background threads, each woken by ``notify`` (each acknowledged
feedback) or every ``policy.poll_interval_s``. The *policy* thread does steps 1-3 and 5; the
*side* thread does step 4, which writes to Meilisearch and waits for its tasks (about a second
per batch on 2 cores), so that the policy never waits for the query memory's indexing:

1. **settles** searches in the durable event log (first positive action, or the
   reward window passing: :meth:`ltrr.eventlog.SQLiteEventLog.settle`), counted in the
   ``ltrr_settlements_total`` and ``ltrr_settled_recall`` metrics (:mod:`ltrr.metrics`);
2. **counts** every search logged after its ``open_cursor``, in log order, the moment it is
   logged (:meth:`BanditRLModule.open`): each arm the search observed gets a reward-0
   observation (:math:`A \mathrel{+}= x x^\top`), and its calls' latencies update the
   measured per-strategy latencies that price the actions (:mod:`ltrr.bandit.latency`; a timeout
   counts as its strategy's full ``timeout_ms``), forced or not, since who chose the plan does not
   change what a call costs. Searches whose caller forced the plan are not learned from unless
   ``policy.learn_from_forced``;
3. **credits** the positive settlements after its ``cursor`` (:meth:`BanditRLModule.credit`):
   the arms whose candidates held the clicked entity get :math:`b \mathrel{+}= x`;
4. **teaches the query memory** the positive (query, entity) pairs after the
   ``memory`` cursor kept in the log (exactly once: each click carries its feedback seq and the
   memory counts it only above the document's ``last_seq``, so a replay after a crash counts
   nothing twice), and folds each positive into its user's
   listening profile (:class:`ltrr.profiles.ProfileLearner`, exactly once: its cursor is written
   with the profiles), so a user id unknown to the imported data gets a history as it is used;
5. **checkpoints** the RLModule with RLlib's ``save_to_path`` at most every
   ``policy.checkpoint_interval_s``, and on shutdown.

**Bad events are skipped, never retried forever** (:mod:`ltrr.poison`). An event that raises while
it is counted, credited, taught to the memory or folded into a profile (a query whose normalised
form is empty, logged before the ingress rejected such queries; a malformed decision) is skipped:
counted in ``status()["skipped_events"]`` (by stage in ``skipped_by_stage``), logged once with its
id, and its cursor moves past it, so later events, the memory and the checkpoints go on. A
backend or SQLite failure is not the event's fault: it fails the step, which the next poll retries.

**Delayed feedback.** A click arrives within seconds, but "no click" is only known when the
reward window has passed. Learning from settlements in the order they happen (as this learner
once did) learns every positive at once and every negative ``reward_window_s`` later: in any
burst of traffic the policy sees only its successes and over-rates cheap plans. Counting each
search at once as a reward-0 observation and adding the reward when the click comes is exact
for the per-arm ridge statistics, which are sums: once the clicks are in, ``A`` and ``b`` are
what learning with the outcome known at once would give, whatever the delays and the order. Until
then the only searches that read as misses are the ones whose click is still in flight (seconds),
so the estimates are unbiased up to that, and they never wait for the window. (The
fake-negative idea of Ktena et al. 2019, "Addressing delayed feedback for continuous training
with neural networks in CTR prediction", needs an importance correction for a logistic model;
for a linear-Gaussian model the correction is exact, because the sufficient statistics add up.)
``tests/unit/test_delayed_feedback.py`` checks it on a seeded stream.

Both cursors are buffers of the module, so they are saved with the parameters (the latency
estimates included): after a crash the learner restores the last checkpoint and replays the
searches and settlements after it, and each is counted, credited and timed exactly once.

**One learner cluster-wide.** Each round of either thread first checks the ``learner`` lease
(:mod:`ltrr.lease`: a PostgreSQL advisory lock when a DSN is set, else a flock next to the event
log), acquiring it when free. While another learner holds it (the other cluster of a blue/green
upgrade) this one settles, applies, prunes and checkpoints nothing, logs once that it waits, and
retries every few seconds; ``status()["lease"]`` is ``"held"`` or ``"waiting"``. Each time it
acquires the lease it first restores the newest checkpoint, as at a start, and replays the log
from that checkpoint's cursors, so what the other learner applied is applied once. With a DSN the
checkpoints are in PostgreSQL (:class:`ltrr.checkpoints.PgCheckpointStore`, written on the lease's
session, so a learner that lost its lease cannot commit one), not on the pod's disk.

Deciders (ingress replicas) call :meth:`snapshot` every ``policy.sync_interval_s``
and load the state with ``set_state``; ``policy_version`` in every response says
which parameters decided.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np
from ray.rllib.core.rl_module.rl_module import RLModule

from deployments.rlmodule import BanditRLModule
from ltrr import metrics
from ltrr.bandit import ContextFeaturizer
from ltrr.bandit.latency import latency_samples
from ltrr.bandit.rewards import observe
from ltrr.catalog.store import open_catalog
from ltrr.checkpoints import checkpoint_store
from ltrr.config import AppConfig
from ltrr.errors import Aborted
from ltrr.event_store import events_dsn, open_event_log
from ltrr.eventlog import FeedbackEvent
from ltrr.lease import LeaseGate, lease_for
from ltrr.poison import SkippedEvents, apply_or_skip
from ltrr.profiles import ProfileLearner
from ltrr.strategies.registry import make_strategy
from ltrr.types import Entity

log = logging.getLogger("ray.serve")
MEMORY_CURSOR = "memory"
BATCH = 500
LEASE = "learner"


class PolicyLearner:
    def __init__(self, app_config: dict[str, Any], *, start: bool = True) -> None:
        app = AppConfig.model_validate(app_config)
        self.cfg = app.policy
        self.strategies = list(app.enabled())
        self.deadlines_ms = {name: float(spec.timeout_ms) for name, spec in app.enabled().items()}
        self.featurizer = ContextFeaturizer(self.strategies, ignore=self.cfg.ignore_features)
        self.events = open_event_log(
            app,
            feedback_window_s=app.feedback_window_s,
            reward_window_s=self.cfg.reward_window_s,
            positive_actions=self.cfg.positive_actions,
        )
        self.store = open_catalog(app)
        self.lease = LeaseGate(lease_for(app, LEASE), logger=log)
        self.lease.check()  # either way the module is the newest checkpoint's; a later holding restores again
        self._lease_term = self.lease.acquisitions  # the holding the module was restored under
        self.checkpoints = checkpoint_store(self.cfg.checkpoint_dir, events_dsn(app), "policy", fence=self.lease.fence)
        self.module = self._restore() or BanditRLModule.build(self.strategies, self.featurizer.dim, self.cfg)
        self.memory = make_strategy("memory", app.strategy_config("memory")) if "memory" in self.strategies else None
        self.skipped = SkippedEvents(log)
        self.profiles = ProfileLearner(self.events, self.store, skipped=self.skipped)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._side_wake = threading.Event()
        self._stop = threading.Event()
        self._saved_version = self.module.version
        self._saved_cursors = (int(self.module.open_cursor), int(self.module.cursor))  # what a restart restores
        self._last_save = time.monotonic()
        self.retention = app.retention
        self._next_prune = 0.0
        self.recall = metrics.RollingRecall()  # ltrr_settled_recall{window}: the settlements made here
        self.totals = {
            "settled": 0,
            "learned": 0,
            "credited": 0,
            "memory": 0,
            "profiles": 0,
            "checkpoints": 0,
            "errors": 0,
            "pruned": 0,
        }
        self._thread = threading.Thread(
            target=self._loop, args=(self._wake, self.step_policy), name="policy-learner", daemon=True
        )
        self._side_thread = threading.Thread(
            target=self._loop, args=(self._side_wake, self.step_side), name="memory-profile-learner", daemon=True
        )
        if start:
            self.start()

    def start(self) -> None:
        """Start both background threads (``__init__`` does, unless ``start=False``)."""
        self._thread.start()
        self._side_thread.start()

    # -- state ------------------------------------------------------------------------------------
    def _restore(self) -> BanditRLModule | None:
        path = self.checkpoints.latest()
        if path is None:
            return None
        try:
            module = RLModule.from_checkpoint(path)
        except ValueError as exc:  # e.g. its buffers are narrower than the features of this version
            log.warning("learner: checkpoint %s does not fit this version (%s); relearning from the log", path, exc)
            return None
        fresh = BanditRLModule.build(self.strategies, self.featurizer.dim, self.cfg)
        if not isinstance(module, BanditRLModule) or module.model_config != fresh.model_config:
            log.warning("learner: checkpoint %s was made for another config; relearning from the event log", path)
            return None
        log.info("learner: restored %s (version %d, cursor %d)", path, module.version, int(module.cursor))
        return module

    def checkpoint(self) -> str | None:
        """Save the module now (RLlib ``save_to_path``) if it changed since the last save, and only while
        this learner holds the lease it restored the module under (module docstring)."""
        with self._lock:
            if not self.lease.check() or self._lease_term != self.lease.acquisitions:
                return None
            if self.module.version == self._saved_version and self.checkpoints.latest() is not None:
                return None
            tmp = self.checkpoints.new()
            self.module.save_to_path(tmp)
            version = self.module.version
            cursors = (int(self.module.open_cursor), int(self.module.cursor))
        try:
            final = self.checkpoints.commit(tmp, version)
        except Aborted as exc:  # the lease was lost before the commit: the next holder replays from its own
            log.warning("learner: checkpoint %d not saved: %s", version, exc)
            return None
        self._saved_version, self._last_save = version, time.monotonic()
        self._saved_cursors = cursors
        self.totals["checkpoints"] += 1
        return str(final)

    # -- the loop -----------------------------------------------------------------------------------
    def _loop(self, wake: threading.Event, step: Any) -> None:
        while not self._stop.is_set():
            wake.wait(self.cfg.poll_interval_s)
            wake.clear()
            try:
                step()
            except Exception:  # noqa: BLE001 - keep learning; the log keeps what was not applied
                self.totals["errors"] += 1
                log.exception("learner: %s failed; will retry", step.__name__)

    def step(self) -> dict[str, int]:
        """One round of both threads' work, in order (what tests and shutdown call); returns what it did."""
        return {**self.step_policy(), **self.step_side()}

    def step_policy(self) -> dict[str, int]:
        """Settle, count the new searches, credit the new clicks, maybe checkpoint (holding the lease)."""
        if not self._holds_lease():
            return self._count({"settled": 0, "learned": 0, "credited": 0})
        settled = 0
        while True:  # small batches: settle holds the log's write lock, and searches wait behind it
            with metrics.timed_write("settle"):
                batch = self.events.settle(limit=BATCH)
            metrics.record_settlements(batch, self.events.search, self.recall)
            n = len(batch)
            settled += n
            if n < BATCH:
                break
        opened = self._open_searches()
        credited = self._credit_positives()
        due = time.monotonic() - self._last_save >= self.cfg.checkpoint_interval_s
        if self.module.version != self._saved_version and due:
            self.checkpoint()
        return self._count({"settled": settled, "learned": opened, "credited": credited})

    def step_side(self) -> dict[str, int]:
        """Teach the query memory and the users' profiles the new positive feedback, prune (holding the lease;
        pruning only once the module was restored under this holding, so the saved cursors are current)."""
        if not self.lease.check():
            return self._count({"memory": 0, "profiles": 0, "pruned": 0})
        memory, profiles = self._teach_memory(), self.profiles.step()
        pruned = self.prune_if_due() if self._lease_term == self.lease.acquisitions else 0
        return self._count({"memory": memory, "profiles": profiles, "pruned": pruned})

    def _holds_lease(self) -> bool:
        """Whether this learner may write now (module docstring); on a new holding of the lease, first
        restore the newest checkpoint (only the policy thread calls this: it alone changes the module)."""
        if not self.lease.check():
            return False
        term = self.lease.acquisitions
        if term != self._lease_term:
            module = self._restore() or BanditRLModule.build(self.strategies, self.featurizer.dim, self.cfg)
            with self._lock:
                self.module, self._saved_version, self._last_save = module, module.version, time.monotonic()
                self._saved_cursors = (int(module.open_cursor), int(module.cursor))
                self._lease_term = term
        return True

    def prune_if_due(self, now: float | None = None) -> int:
        """Delete the searches no consumer needs any more (``retention``), at most every ``interval_s``.

        The cursors are the last *saved* checkpoint's (a restart restores those and replays from
        them), the query memory's and the profiles'; see :class:`ltrr.config.RetentionConfig`."""
        r = self.retention
        t = time.monotonic() if now is None else now
        if not r.enabled or t < self._next_prune:
            return 0
        self._next_prune = t + r.interval_s
        open_cursor, cursor = self._saved_cursors
        folded = self.profiles.cursor()
        if self.memory is not None:
            folded = min(folded, self.events.cursor(MEMORY_CURSOR))
        pruned = 0
        while True:
            n = self.events.prune(
                before_ts=time.time() - r.max_age_s,
                through_search_seq=open_cursor,
                through_settlement_seq=cursor,
                through_feedback_seq=folded,
                keep_newest=r.min_searches,
                limit=r.batch,
            )
            pruned += n
            if n < r.batch:
                return pruned

    def _count(self, out: dict[str, int]) -> dict[str, int]:
        for k, v in out.items():
            self.totals[k] += v
        return out

    def _open_searches(self) -> int:
        """Count every search logged after ``open_cursor``, in log order, as reward-0 observations of
        the arms it observed (and measure its calls' latencies); returns how many were learned from."""
        opened = 0
        while True:
            batch = self.events.searches_since(int(self.module.open_cursor), BATCH)
            if not batch:
                return opened
            with self._lock:
                for seq, event in batch:
                    with self.skipped.guard("open", f"search {event.request_id}", seq):
                        obs = observe(event, None, self.featurizer, self.cfg.ladder, self.cfg.position_bias)
                        latencies = latency_samples(event.calls, self.deadlines_ms)
                        if obs is not None and self.cfg.learns(obs.decision.forced):
                            self.module.open(obs.decision, obs.rewards, obs.query_class, latencies, obs.visibility)
                            opened += 1
                        elif latencies:
                            self.module.learn_latencies(latencies)
                    self.module.open_cursor.fill_(seq)

    def _credit_positives(self) -> int:
        """Credit the positive settlements after ``cursor`` whose searches were counted already;
        stops at the first one whose search is not (the next step counts it, then credits it)."""
        credited = 0
        while True:
            batch = self.events.positive_settlements_since(int(self.module.cursor), BATCH)
            if not batch:
                return credited
            with self._lock:
                for st, event, search_seq in batch:
                    if search_seq > int(self.module.open_cursor):
                        return credited
                    with self.skipped.guard("credit", f"settlement of {st.request_id}", st.seq):
                        obs = observe(event, st.entity_id, self.featurizer, self.cfg.ladder, self.cfg.position_bias)
                        if obs is not None and self.cfg.learns(obs.decision.forced):
                            self.module.credit(obs.decision, obs.rewards, obs.query_class, obs.hits, obs.visibility)
                            credited += 1
                    self.module.cursor.fill_(st.seq)

    def _teach_memory(self) -> int:
        """Teach the query memory the positive feedback after the ``memory`` cursor, in log order, exactly
        once: each click carries its feedback ``seq``, and the memory counts a click only if its ``seq``
        is above the ``last_seq`` kept in the click's own document (:mod:`ltrr.strategies.memory`,
        "Exactly once"). So a crash between ``record_many`` and ``set_cursor`` replays the batch without
        counting it twice, as the bandit's settlements are applied once by the cursor saved with the
        parameters. Returns how many clicks were recorded (a replayed click is recorded, not counted)."""
        if self.memory is None:
            return 0
        n = 0
        while True:
            rows = self.events.positives_since(self.events.cursor(MEMORY_CURSOR), BATCH)
            if not rows:
                return n
            entities = self.store.get_many([fb.entity_id for _, fb, _ in rows])
            known = [(seq, fb, q) for seq, fb, q in rows if fb.entity_id in entities and q.strip()]
            if known:
                n += self._record_or_skip(known, entities)
            self.events.set_cursor(MEMORY_CURSOR, rows[-1][0])

    def _record_or_skip(self, rows: list[tuple[int, FeedbackEvent, str]], entities: dict[str, Entity]) -> int:
        """Teach the memory the clicks ``rows`` (feedback seq, event, query) in one ``record_many``, bisected
        down to the clicks that raise (:func:`ltrr.poison.apply_or_skip`), which are skipped. Returns how
        many were recorded."""
        memory: Any = self.memory
        clicks = [(q, fb.entity_id, 1.0, seq) for seq, fb, q in rows]  # seq: counted once (_teach_memory)

        def apply(lo: int, hi: int) -> int:
            memory.record_many(clicks[lo:hi], entities)
            return hi - lo

        def skip(i: int, exc: Exception) -> int:
            self.skipped.record("memory", f"feedback {rows[i][1].event_id}", rows[i][0], exc)
            return 0

        return apply_or_skip(len(rows), apply, skip) or 0

    # -- what deciders and operators call ------------------------------------------------------------
    def notify(self) -> None:
        """New feedback was acknowledged: learn now rather than at the next poll."""
        self._wake.set()
        self._side_wake.set()

    def snapshot(self, since_version: int = -1) -> dict[str, Any] | None:
        """The module state if its version differs from ``since_version``, else None."""
        with self._lock:
            if self.module.version == since_version:
                return None
            return {"version": self.module.version, "state": self.module.state_copy()}

    def version(self) -> int:
        """The parameters' version (cheap: what `make bench` uses to time one Serve hop)."""
        return self.module.version

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "policy_version": self.module.policy_version,
                "cursor": int(self.module.cursor),
                "open_cursor": int(self.module.open_cursor),
                "arm_counts": np.asarray(self.module.count.numpy()).tolist(),
                "latency_ms": self.module.latency.as_dict(),
                "saved_version": self._saved_version,
                "lease": self.lease.state,
                **self.totals,
                "skipped_events": self.skipped.total,
                "skipped_by_stage": self.skipped.by_stage(),
                **{f"log_{k}": v for k, v in self.events.counts().items()},
            }

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._side_wake.set()
        for thread in (self._thread, self._side_thread):
            if thread.is_alive():
                thread.join(timeout=10)
        try:
            self.step()
            self.checkpoint()
        finally:
            self.lease.release()  # after the last checkpoint: the next holder restores it
            self.events.close()
            self.store.close()

    def __del__(self) -> None:
        stop = getattr(self, "_stop", None)  # absent when __init__ failed
        if stop is not None and not stop.is_set():
            try:
                self.close()
            except Exception:  # noqa: BLE001 - best effort at shutdown; the log still holds everything
                log.exception("learner: final checkpoint failed")

    async def check_health(self) -> None:
        for thread in (self._thread, self._side_thread):
            if not thread.is_alive() and not self._stop.is_set():
                raise RuntimeError(f"learner thread {thread.name} died")
