"""scripts/benchmark.py on a small synthetic MNIST: every contender and every --tweaks variant runs and gets a time,
and the runs' logs and checkpoints are not left behind."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_mnist

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py"


@pytest.mark.slow  # a subprocess of a dozen short fits
def test_tweaks_times_every_variant(tmp_path):
    data = write_mnist(tmp_path / "mnist", n_train=7000)  # 5,000 held out for validation: 16 batches of 128 left
    result = subprocess.run([sys.executable, str(SCRIPT), "--tweaks", "--rounds", "2", "--steps", "12",
                             "--data_dir", str(data), "--json", str(tmp_path / "tweaks.json")], capture_output=True,
                            text=True, timeout=600, env=own_tmpdir(tmp_path))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert list((tmp_path / "tmp").iterdir()) == []
    rows = {line[:20].strip(): line[20:].split() for line in result.stdout.splitlines()[-8:-1]}
    assert list(rows) == ["digitnet", "nn.Dropout", "self.log every step", "Adam, not fused", "bar every step",
                          "Lightning alone", "bare loop"]
    assert all(float(ms) > 0 and float(ratio) > 0 for ms, ratio, _ in rows.values())
    assert rows["digitnet"][1] == "1.000"
    assert list(json.loads((tmp_path / "tweaks.json").read_text())) == list(rows)  # --json was left unwritten


@pytest.mark.slow  # a subprocess
def test_tweaks_refuses_too_few_rounds_in_one_line():
    result = subprocess.run([sys.executable, str(SCRIPT), "--tweaks", "--rounds", "1"], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].endswith(
        "--tweaks needs --rounds of at least 2 (quartiles) and --steps of at least 11 (10 are warm-up)")


@pytest.mark.slow  # a subprocess of short fits
def test_the_contenders_table_and_json_and_no_run_folder_left(tmp_path):
    data = write_mnist(tmp_path / "mnist", n_train=6000)  # 1,000 training images: 8 steps an epoch
    out = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, str(SCRIPT), "--epochs", "3", "--data_dir", str(data), "--json", str(out)],
                            capture_output=True, text=True, timeout=600, env=own_tmpdir(tmp_path))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert all(len(figures["epoch_times"][name]) == 4 for name in ("digitnet", "bare", "floor", "naive"))
    assert figures["ratio_digitnet_to_bare"] == figures["digitnet_sec_per_epoch"] / figures["bare_sec_per_epoch"] > 0
    assert list((tmp_path / "tmp").iterdir()) == []  # the fit's lightning_logs and checkpoints were removed


def own_tmpdir(tmp_path: Path) -> dict:
    """The environment with TMPDIR at an empty folder of the test's, to see what the script leaves there."""
    (tmp_path / "tmp").mkdir()
    return {**os.environ, "TMPDIR": str(tmp_path / "tmp")}


@pytest.mark.slow  # a subprocess
def test_missing_data_is_the_data_s_message_not_a_traceback(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--data_dir", str(tmp_path / "nowhere"), "--epochs", "3"],
                            capture_output=True, text=True, timeout=300, env=own_tmpdir(tmp_path), check=False)  # fmt: skip
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "benchmark.py: error: MNIST was not found in" in result.stderr
