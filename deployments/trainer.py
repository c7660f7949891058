"""The ranker trainer: retrains the ranker from the event log and publishes it (one replica, like the learner).

A background thread checks the log every ``POLL_S`` seconds. It retrains
(:func:`ltrr.ranking.retrain.retrain_from_log`) once ``ranking.retrain_after`` more
searches got feedback since the last attempt, or ``ranking.retrain_interval_s``
passed with any new ones. A model is published only if it is not worse than the
current one and RRF on the newest held-out searches; ingress replicas pick it up
within ``ranking.reload_interval_s``. Training runs in this replica's process, so
it never competes with a search for the event loop; CatBoost uses one thread.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from ltrr.config import AppConfig
from ltrr.eventlog import SQLiteEventLog
from ltrr.ranking.retrain import retrain_from_log

log = logging.getLogger("ray.serve")
POLL_S = 10.0


class RankerTrainer:
    def __init__(self, app_config: dict[str, Any], *, start: bool = True) -> None:
        self.app = AppConfig.model_validate(app_config)
        self.cfg = self.app.ranking
        self.events = SQLiteEventLog(self.app.events_path)
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
        """Retrain now (what ``due`` would trigger); returns the report."""
        with self._lock:
            self._tried_count = self.events.searches_with_feedback()
            self._tried_at = time.monotonic()
            report = retrain_from_log(self.app)
            self.runs += 1
            self.last = report.to_dict()
            log.info("trainer: %s", report.published or f"not published: {report.reason}")
            return self.last

    def _loop(self) -> None:
        while not self._stop.wait(POLL_S):
            try:
                if self.due():
                    self.train_now()
            except Exception:  # noqa: BLE001 - keep the trainer alive; the next attempt reads the log again
                log.exception("trainer: retraining failed; will retry")

    def status(self) -> dict[str, Any]:
        return {"runs": self.runs, "last": self.last, "labelled_at_last_try": self._tried_count}

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.events.close()

    async def check_health(self) -> None:
        if not self._thread.is_alive() and not self._stop.is_set():
            raise RuntimeError("trainer thread died")
