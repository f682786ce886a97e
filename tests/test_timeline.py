"""digitnet.timeline.Timeline, the callback of scripts/time_to_accuracy.py, in a tiny `fit` from the command line,
and the script itself."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tiny_run, write_mnist

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "time_to_accuracy.py"


def test_the_timeline_has_the_run_s_events_and_a_test_accuracy_after_each_epoch(tmp_path):
    path = tmp_path / "timeline.jsonl"
    tiny_run(tmp_path, "--trainer.callbacks+=digitnet.timeline.Timeline", f"--trainer.callbacks.path={path}",
             "--trainer.max_epochs=2")  # fmt: skip
    events = [json.loads(line) for line in path.read_text().splitlines()]
    names = [event["event"] for event in events]
    assert names[:2] == ["fit_start", "train_start"] and names.count("validation_start") == 2
    assert names[-3:] == ["train_end", "test_start", "test_end"]  # fit's test of the final model comes last
    assert [event["time"] for event in events] == sorted(event["time"] for event in events)
    epochs = [event for event in events if event["event"] == "epoch"]
    assert [event["epoch"] for event in epochs] == [0, 1]
    assert all(0 <= event["test_acc"] <= 1 and event["paused"] >= 0 for event in epochs)


@pytest.mark.slow  # two subprocesses
def test_time_to_accuracy_reports_each_seed_s_run(tmp_path):
    data = write_mnist(tmp_path / "mnist")
    out = tmp_path / "tta"
    result = subprocess.run([sys.executable, str(SCRIPT), "--seeds", "0", "1", "--out", str(out),
                             f"--data.data_dir={data}", "--data.val_size=20", "--data.batch_size=32",
                             "--trainer.max_epochs=2"], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    rows = list(csv.DictReader((out / "time_to_accuracy.csv").open()))
    assert [row["seed"] for row in rows[:2]] == ["0", "1"]
    for row in rows[:2]:
        assert 0 <= float(row["test accuracy (%)"]) <= 100
        assert float(row["seconds to print it"]) > float(row["training s"]) > 0
    assert "| mean (95% interval) |" in (out / "time_to_accuracy.md").read_text()


@pytest.mark.slow  # a subprocess
def test_time_to_accuracy_refuses_a_missing_config_in_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "tta"
    result = subprocess.run([sys.executable, str(SCRIPT), "--config", str(tmp_path / "nope.yaml"), "--out", str(out)],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith(f"error: --config {tmp_path / 'nope.yaml'}: no such file")
    assert not out.exists()
