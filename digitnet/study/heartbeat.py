"""A running trial's heartbeat, and rerunning the trials of workers that died (why not Optuna's: docs/study.md)."""

from __future__ import annotations

import os
import socket
import threading
import time

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

HEARTBEAT = "heartbeat"  # user attribute: time.time() of the trial's latest heartbeat
WORKER = "worker"  # user attribute: the host and process id of the worker that runs the trial


# Optuna's own heartbeat stays out: tests/test_tune.py::test_a_killed_worker_s_trial_runs_again_with_its_hyperparameters
class Heartbeat(threading.Thread):
    """`with Heartbeat(trial, interval):` beats now and every `interval` seconds (a thread) until the block ends."""

    def __init__(self, trial: optuna.Trial, interval: float) -> None:
        super().__init__(name=f"heartbeat-{trial.number}", daemon=True)
        self.trial, self.interval, self.stopped = trial, interval, threading.Event()

    def __enter__(self) -> Heartbeat:
        self.trial.set_user_attr(WORKER, f"{socket.gethostname()}:{os.getpid()}")
        self.beat()
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stopped.set()
        self.join()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.beat()

    def beat(self) -> None:
        try:
            self.trial.set_user_attr(HEARTBEAT, time.time())
        except UpdateFinishedTrialError:  # failed by another worker, which took this one for dead
            self.stopped.set()


def rerun_stale_trials(study: optuna.Study, grace: float | None) -> None:
    """Fail RUNNING trials silent for over `grace` seconds (all for None) and queue their hyperparameters again."""
    now = time.time()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        last_sign_of_life = max(trial.user_attrs.get(HEARTBEAT, 0.0), trial.datetime_start.timestamp())
        if grace is not None and now - last_sign_of_life <= grace:
            continue
        try:
            failed = study.tell(trial.number, state=TrialState.FAIL)
        except (UpdateFinishedTrialError, ValueError):  # finished meanwhile: told by its worker or failed by another
            continue
        retried = [RetryHeartbeatStaleTrialCallback.retry_history(t)[-1:] for t in study.get_trials(deepcopy=False)]
        if [trial.number] not in retried:  # SQLite lets two workers fail the same trial: queue it once
            RetryHeartbeatStaleTrialCallback()(study, failed)
