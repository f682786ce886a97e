"""A running trial's heartbeat, and rerunning the trials of workers that died.

A worker killed in the middle of a trial (kill -9, out of memory, a machine gone) leaves that trial RUNNING
in the storage. While a worker runs a trial, `Heartbeat` writes the time into the trial's user attribute
"heartbeat" every few seconds; `rerun_stale_trials`, called by every worker between trials and while it
waits, fails each RUNNING trial silent for longer than the grace period and queues its hyperparameters again
(Optuna's RetryHeartbeatStaleTrialCallback: the new trial records the old one's number as `failed_trial`).

Why not Optuna's own heartbeat (RDBStorage(heartbeat_interval=...)): it exists for RDB storages only, not
for the journal file; and a worker killed after its trial was created but before the first heartbeat was
written leaves a trial that it never counts as stale, so the last worker waited for it forever. Here a trial
without a heartbeat yet is judged by its `datetime_start`, as Optuna's FAQ does for ask-and-tell, so every
RUNNING trial either beats or goes stale. All of it is public Optuna API, on any storage. The workers'
clocks must agree (NTP) to well within the grace period.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

HEARTBEAT = "heartbeat"  # user attribute: time.time() of the trial's latest heartbeat
WORKER = "worker"  # user attribute: the host and process id of the worker that runs the trial


class Heartbeat:
    """`with Heartbeat(trial, interval):` writes the trial's heartbeat now and every `interval` seconds after,
    from a thread, until the block ends; it stops early if another worker has given the trial up. The trial's
    "worker" attribute names this process (host:pid), for whoever watches the study."""

    def __init__(self, trial: optuna.Trial, interval: float) -> None:
        self.trial, self.interval = trial, interval
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"heartbeat-{trial.number}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self.trial.set_user_attr(WORKER, f"{socket.gethostname()}:{os.getpid()}")
        self.beat()
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stopped.set()
        self.thread.join()

    def _run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.beat()

    def beat(self) -> None:
        try:
            self.trial.set_user_attr(HEARTBEAT, time.time())
        except UpdateFinishedTrialError:  # failed by another worker, which took this one for dead
            self.stopped.set()


def last_sign_of_life(trial: FrozenTrial) -> float:
    """When a running trial was last known alive: its heartbeat, or its start before the first heartbeat."""
    return max(trial.user_attrs.get(HEARTBEAT, 0.0), trial.datetime_start.timestamp())


def rerun_stale_trials(study: optuna.Study, grace: float) -> list[int]:
    """Fail the RUNNING trials silent for more than `grace` seconds and queue each one's hyperparameters
    again; returns the numbers of those this worker failed (another worker may have been first)."""
    now, failed = time.time(), []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if now - last_sign_of_life(trial) > grace and rerun(study, trial):
            failed.append(trial.number)
    return failed


def rerun(study: optuna.Study, trial: FrozenTrial) -> bool:
    """Fail `trial` and queue its hyperparameters again, unless another worker already did."""
    try:
        failed = study.tell(trial.number, state=TrialState.FAIL)
    except (UpdateFinishedTrialError, ValueError):  # finished meanwhile: told by its worker or failed by another
        return False
    retried = [RetryHeartbeatStaleTrialCallback.retry_history(t)[-1:] for t in study.get_trials(deepcopy=False)]
    if [trial.number] in retried:  # SQLite lets two workers fail the same trial: queue it once
        return False
    RetryHeartbeatStaleTrialCallback()(study, failed)
    return True
