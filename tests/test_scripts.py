"""The measurement scripts refuse bad arguments in one line, before they write anything."""

import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_run
from helpers import digitnet_env

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
A_FILE = "notes.txt"  # written in the test's folder: a file where an output folder is asked for
ERROR = "error: "


@pytest.mark.slow  # subprocesses
@pytest.mark.parametrize("script, args, message", [
    ("read_numbers.py", ["--ckpt", "C=missing.ckpt", "--numbers", "0", "--out", "out"],
     "--numbers, --non_digits and --singles must be at least 1, --seed at least 0"),
    ("read_numbers.py", ["--ckpt", "C=missing.ckpt", "--seed", "-1", "--out", "out"],
     "--numbers, --non_digits and --singles must be at least 1, --seed at least 0"),
    ("read_numbers.py", ["--ckpt", "C=missing.ckpt", "--out", A_FILE], f"--out {A_FILE}: a file, not a folder"),
    ("robustness.py", ["--ckpt", "C=missing.ckpt", "--images", "0", "--out", "out"],
     "--images must be at least 1, --seed at least 0"),
    ("robustness.py", ["--ckpt", "C=missing.ckpt", "--out", A_FILE], f"--out {A_FILE}: a file, not a folder"),
    ("number_speed.py", ["--ckpt", "missing.ckpt"], "--ckpt takes NAME=PATH"),
    ("number_speed.py", ["--ckpt", "C=missing.ckpt"], "missing.ckpt: no such checkpoint"),
    ("number_speed.py", ["--ckpt", "C=missing.ckpt", "--repeats", "0"], "--repeats must be at least 1"),
    ("writer_adaptation.py", ["--ckpt", "C=missing.ckpt", "--out", "out"], "missing.ckpt: no such checkpoint"),
    ("writer_adaptation.py", ["--ckpt", "C=missing.ckpt", "--seed", "-1", "--out", "out"], "--seed at least 0"),
    ("time_to_accuracy.py", ["--out", A_FILE], f"--out {A_FILE}: a file, not a folder"),
    *[(script, ["--ckpt", "C=a.ckpt", "--ckpt", "C=b.ckpt", "--out", "out"], "--ckpt names a network twice")
      for script in ("read_numbers.py", "robustness.py", "writer_adaptation.py")],
    ("number_speed.py", ["--ckpt", "C=a.ckpt", "--ckpt", "C=b.ckpt"], "--ckpt names a network twice"),
    ("serve_benchmark.py", ["--png_dir", A_FILE], f"--png_dir {A_FILE}: a file, not a folder"),
    ("serve_benchmark.py", ["--answers", "nowhere/a.csv"], "--answers nowhere/a.csv: its folder does not exist"),
    ("serve_benchmark.py", ["--images", "2600", "--digits", "4"], "take 10,400 test digits; MNIST has 10,000"),
    ("benchmark.py", ["--threads", "0"], "--threads must be at least 1"),
    ("benchmark.py", ["--json", "nowhere/bench.json"], "--json nowhere/bench.json: its folder does not exist"),
])  # fmt: skip
def test_a_bad_argument_is_one_line_and_writes_nothing(script, args, message, tmp_path):
    (tmp_path / A_FILE).write_text("a file")
    result = subprocess.run([sys.executable, str(SCRIPTS / script), *args], cwd=tmp_path, capture_output=True,
                            text=True, env=digitnet_env(), timeout=300)  # fmt: skip
    assert result.returncode != 0 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert ERROR in last and message in last.split(ERROR, 1)[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == [A_FILE]


@pytest.mark.slow  # two subprocesses: the script and the `fit` it starts
def test_time_to_accuracy_leaves_no_folder_when_fit_refuses_its_arguments(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPTS / "time_to_accuracy.py"), "--out", "runs/tta", "--bogus"],
                            cwd=tmp_path, capture_output=True, text=True, env=digitnet_env(), timeout=300)  # fmt: skip
    assert result.returncode != 0 and "unknown option --bogus" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_robustness_s_table_counts_the_test_digits_it_had_not_those_asked_for(tmp_path):
    # --images over the test set's size: the table said "20000 MNIST test digits each" of 10,000.
    checkpoint, data = tiny_run(tmp_path / "run")
    robustness = runpy.run_path(str(SCRIPTS / "robustness.py"))
    robustness["main"](["--ckpt", f"C={checkpoint}", "--data_dir", str(data), "--images", "100",
                        "--out", str(tmp_path / "out")])  # fmt: skip
    table = (tmp_path / "out" / "robustness.md").read_text()
    assert table.startswith("| kind (40 MNIST test digits each) | C |")


def test_writer_adaptation_reads_every_network_before_it_writes_or_trains_anything(tmp_path, capsys):
    # A checkpoint torch reads but that is no DigitClassifier's stopped the script after the first network's
    # fine-tunes, writing no table: their results were lost.
    checkpoint, data = tiny_run(tmp_path / "run")
    bad = torch.load(checkpoint, weights_only=True)
    bad["hyper_parameters"]["net"] = {"class_path": "digitnet.nets.ConvNet", "init_args": {"width": 4}}
    torch.save(bad, tmp_path / "bad.ckpt")
    writer = runpy.run_path(str(SCRIPTS / "writer_adaptation.py"))
    with pytest.raises(SystemExit) as exit_:
        writer["main"](["--ckpt", f"C={checkpoint}", "--ckpt", f"B={tmp_path / 'bad.ckpt'}", "--data_dir", str(data),
                        "--out", str(tmp_path / "out")])  # fmt: skip
    assert exit_.value.code == 2 and "bad.ckpt: not a checkpoint of digitnet's DigitClassifier" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
