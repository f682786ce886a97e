"""digitnet.timeline.Timeline, the callback of scripts/time_to_accuracy.py, in a tiny `fit` from the command line."""

import json

from conftest import tiny_run


def test_the_timeline_has_the_run_s_events_and_a_test_accuracy_after_each_epoch(tmp_path):
    path = tmp_path / "timeline.jsonl"
    tiny_run(tmp_path, "--trainer.callbacks+=digitnet.timeline.Timeline", f"--trainer.callbacks.path={path}",
             "--trainer.max_epochs=2")  # fmt: skip
    events = [json.loads(line) for line in path.read_text().splitlines()]
    names = [event["event"] for event in events]
    assert names[:2] == ["fit_start", "train_start"] and names.count("validation_start") == 2
    assert [event["time"] for event in events] == sorted(event["time"] for event in events)
    epochs = [event for event in events if event["event"] == "epoch"]
    assert [event["epoch"] for event in epochs] == [0, 1]
    assert all(0 <= event["test_acc"] <= 1 and event["paused"] >= 0 for event in epochs)
