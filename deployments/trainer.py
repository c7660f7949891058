"""The ranker trainer: retrains the ranker from the event log and publishes it (one replica, like the learner).

A background thread checks the log every ``POLL_S`` seconds. It retrains
(:func:`ltrr.ranking.retrain.retrain_from_log`) once ``ranking.retrain_after`` more
searches got feedback since the last attempt, or ``ranking.retrain_interval_s``
passed with any new ones. A model is published only if it is not worse than the
current one and RRF on the newest held-out searches; ingress replicas pick it up
within ``ranking.reload_interval_s``; the ``ltrr_ranker_version`` gauge of this deployment is the
published model's number (:mod:`ltrr.metrics`). Training runs in this replica's process, so
it never competes with a search for the event loop; CatBoost uses one thread.

One trainer cluster-wide: each round, and :meth:`RankerTrainer.train_now`, first check the ``trainer``
lease (:mod:`ltrr.lease`), acquiring it when free; while another trainer holds it (the other cluster of
a blue/green upgrade) this one neither trains nor publishes, logs once that it waits, and retries every
few seconds. ``status()["lease"]`` is ``"held"`` or ``"waiting"``. The registry it publishes into
(:func:`ltrr.ranking.registry.registry_for`: PostgreSQL with a DSN) is fenced by that lease, so a trainer
that lost it while training writes nothing: the report's ``reason`` says so.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from ltrr import metrics
from ltrr.config import AppConfig
from ltrr.errors import Aborted
from ltrr.event_store import open_event_log
from ltrr.lease import TRAINER, LeaseGate, lease_for, waiting_message
from ltrr.ranking.registry import registry_for
from ltrr.ranking.retrain import Report, retrain_from_log

log = logging.getLogger("ray.serve")
POLL_S = 10.0
LEASE = TRAINER


class RankerTrainer:
    def __init__(self, app_config: dict[str, Any], *, start: bool = True) -> None:
        self.app = AppConfig.model_validate(app_config)
        self.cfg = self.app.ranking
        self.events = open_event_log(self.app)
        self.lease = LeaseGate(lease_for(self.app, LEASE), logger=log)
        self.lease.check()
        self.registry = registry_for(self.app, lease=self.lease.lease)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._tried_at = time.monotonic()
        self._tried_count = self.events.searches_with_feedback()
        self.last: dict[str, Any] = {}
        self.runs = 0
        self._thread = threading.Thread(target=self._loop, name="ranker-trainer", daemon=True)
        if start:
            self._thread.start()

    def due(self) -> bool:
        """Enough new labelled searches, or the interval passed with some."""
        new = self.events.searches_with_feedback() - self._tried_count
        waited = time.monotonic() - self._tried_at
        return new >= self.cfg.retrain_after or (new > 0 and waited >= self.cfg.retrain_interval_s)

    def train_now(self) -> dict[str, Any]:
        """Retrain now (what ``due`` would trigger); returns the report. While another trainer holds the
        lease nothing is trained: the report's ``reason`` says so."""
        with self._lock:
            if not self.lease.check():
                return Report("event log", reason=waiting_message(LEASE)).to_dict()
            self._tried_count = self.events.searches_with_feedback()
            self._tried_at = time.monotonic()
            try:
                report = retrain_from_log(self.app, registry=self.registry)
            except Aborted as exc:  # the lease was lost while training: nothing was published
                log.warning("trainer: %s", exc)
                return Report("event log", reason=str(exc)).to_dict()
            self.runs += 1
            self.last = report.to_dict()
            log.info("trainer: %s", report.published or f"not published: {report.reason}")
            if report.published:
                metrics.record_ranker_version(report.published)
            return self.last

    def _loop(self) -> None:
        while not self._stop.wait(POLL_S):
            try:
                if self.lease.check() and self.due():
                    self.train_now()
                metrics.record_ranker_version(self.registry.current_version())  # what is published
            except Exception:  # noqa: BLE001 - keep the trainer alive; the next attempt reads the log again
                log.exception("trainer: retraining failed; will retry")

    def status(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "last": self.last,
            "labelled_at_last_try": self._tried_count,
            "lease": self.lease.state,
        }

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.lease.release()
        self.registry.close()
        self.events.close()

    async def check_health(self) -> None:
        if not self._thread.is_alive() and not self._stop.is_set():
            raise RuntimeError("trainer thread died")
