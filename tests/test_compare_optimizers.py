"""The comparison (digitnet.study.compare, scripts/compare_optimizers.py) on the tiny synthetic MNIST, its
statistics and summary, and the config files it reads."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from digitnet.cli import build_cli, main
from digitnet.errors import DigitnetError
from digitnet.study import compare, stats
from digitnet.study import summary as report  # `summary`: the tests' name for summary.md's text

pytestmark = pytest.mark.slow  # the optimizer study: real training runs

ROOT = Path(__file__).parents[1]
OPTIMIZER_CONFIGS = sorted((ROOT / "configs" / "optimizers").glob("*.yaml"))
KERAS_CONFIGS = sorted((ROOT / "configs" / "optimizers" / "keras").glob("*.yaml"))
PRESETS = sorted((ROOT / "configs").glob("*.yaml"))


def test_the_report_s_four_optimizers_have_configs():
    assert sorted(p.stem for p in OPTIMIZER_CONFIGS) == ["adadelta", "adam", "nadam", "sgd"]
    assert sorted(p.stem for p in KERAS_CONFIGS) == ["adadelta", "adam", "nadam", "sgd"]


def test_keras_configs_hold_keras_s_defaults():
    args = {p.stem: yaml.safe_load(p.read_text())["model"]["optimizer"]["init_args"] for p in KERAS_CONFIGS}
    assert args["sgd"] == {"lr": 0.01, "momentum": 0.0}
    assert args["adam"] == args["nadam"] == {"lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-7}
    assert args["adadelta"] == {"lr": 0.001, "rho": 0.95, "eps": 1e-7}


@pytest.mark.parametrize("config", OPTIMIZER_CONFIGS + KERAS_CONFIGS + PRESETS, ids=lambda p: p.parent.name + "/" + p.name)
def test_the_cli_accepts_each_config(config, mnist_dir):
    main(["fit", f"--config={config}", f"--data.data_dir={mnist_dir}", "--data.val_size=20", "--trainer.fast_dev_run=true"])


def test_one_optimizer_one_seed_one_epoch(mnist_dir, tmp_path, capsys):
    out = tmp_path / "cmp"
    compare.main([f"--data_dir={mnist_dir}", f"--out={out}", "--optimizers=SGD", "--seeds=1", "--epochs=1",
                 "--data.val_size=20"])

    results = pd.read_csv(out / "results.csv")
    for column in ["optimizer", "seed", "epochs", "test_acc", "test_loss", "best_val_acc", "sec_per_epoch"]:
        assert column in results.columns
    assert len(results) == 1
    row = results.iloc[0]
    assert (row.optimizer, row.seed, row.epochs) == ("SGD", 0, 1)
    assert 0 <= row.test_acc <= 1 and 0 <= row.best_val_acc <= 1 and row.sec_per_epoch > 0
    summary = (out / "summary.md").read_text()
    assert "| SGD | SGD lr=" in summary and "test accuracy (%)" in summary
    assert "| - (one seed) |" in summary and "nan" not in summary
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((out / "SGD" / "seed_0").glob("events.out.tfevents.*"))  # TensorBoard run folder
    lines = capsys.readouterr().out.splitlines()
    assert "SGD seed 0: test acc" in lines[0] and lines[-1].startswith("1 runs in")


def test_a_run_is_the_cli_s_fit_with_that_config_and_seed(mnist_dir, tmp_path):
    # The script trains through the CLI: the same config and seed end in the same weights as
    # `python -m digitnet fit --config ... --seed_everything ...`.
    common = ["--data.val_size=20", "--data.batch_size=32"]
    compare.main([f"--data_dir={mnist_dir}", f"--out={tmp_path / 'cmp'}", "--optimizers=Adam", "--seeds=2", "--epochs=2", *common])
    main(["fit", f"--config={ROOT / 'configs/optimizers/adam.yaml'}", "--seed_everything=1", "--trainer.max_epochs=2",
          f"--data.data_dir={mnist_dir}", *common, "--trainer.enable_progress_bar=false"])
    ours = torch.load(tmp_path / "cmp/Adam/seed_1/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    cli = torch.load(tmp_path / "lightning_logs/Adam/version_0/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    assert ours.keys() == cli.keys() and all(torch.equal(ours[k], cli[k]) for k in ours)


@pytest.mark.parametrize("config", OPTIMIZER_CONFIGS + PRESETS, ids=lambda p: p.name)
def test_unset_optimizer_arguments_keep_torch_s_defaults(config, mnist_dir):
    # The CLI carries the default optimizer's (Adam's) lr and eps over to another optimizer class
    # unless the config sets them; each config must end up with its own optimizer's defaults.
    optimizer = yaml.safe_load(config.read_text())["model"]["optimizer"]
    cls = getattr(torch.optim, optimizer["class_path"].rsplit(".", 1)[-1])
    expected = {**cls([torch.zeros(1, requires_grad=True)]).defaults, **optimizer["init_args"]}
    model = build_cli([f"--config={config}", f"--data.data_dir={mnist_dir}"], run=False).model
    actual = model.make_optimizer([torch.zeros(1, requires_grad=True)]).defaults
    as_tuples = lambda d: {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}  # noqa: E731  (YAML: lists)
    assert as_tuples({k: actual[k] for k in expected}) == as_tuples(expected)


def test_curves_come_from_the_event_files(mnist_dir, tmp_path):
    compare.main([f"--data_dir={mnist_dir}", f"--out={tmp_path}", "--optimizers=SGD,Adam", "--seeds=2", "--epochs=3",
                 "--data.val_size=20"])
    results = pd.read_csv(tmp_path / "results.csv")
    curves = report.read_curves({(r.optimizer, r.seed): r.log_dir for r in results.itertuples()})
    assert len(curves) == 2 * 2 * 3 and sorted(curves.epoch.unique()) == [1, 2, 3]
    # The best epoch's val/acc in the event file is the score the checkpoint callback kept.
    best = curves.groupby(["optimizer", "seed"]).val_acc.max()
    assert best.values == pytest.approx(results.set_index(["optimizer", "seed"]).loc[best.index].best_val_acc.values)


def test_welch_holm_calls_a_clear_difference_different_and_one_distribution_not():
    rng = np.random.default_rng(0)
    samples = {
        "better": list(rng.normal(0.985, 0.001, 10)),
        "worse": list(rng.normal(0.980, 0.001, 10)),
        "worse again": list(rng.normal(0.980, 0.001, 10)),  # a second draw of the same distribution
    }
    tests = {(t["a"], t["b"]): t for t in stats.pairwise_tests(samples)}
    assert tests[("better", "worse")]["different"] and tests[("better", "worse again")]["different"]
    same = tests.get(("worse", "worse again")) or tests[("worse again", "worse")]
    assert not same["different"] and same["p_holm"] >= same["p"]


def test_the_interval_of_samples_without_spread_is_their_value():
    assert stats.mean_ci([0.98, 0.98, 0.98]) == (0.98, 0.98, 0.98)  # every seed read the same images right


def test_holm_adjusts_p_values_step_down():
    # Holm's rule on the sorted p-values: the k-th smallest times (m - k + 1), kept non-decreasing.
    rng = np.random.default_rng(1)
    base = rng.normal(0, 1, 8)
    tests = stats.pairwise_tests({"a": list(base + 3), "b": list(base + 0.9), "c": list(base)})
    ps = [t["p"] for t in tests]
    assert ps == sorted(ps)
    expected = [min(1, 3 * ps[0]), min(1, max(3 * ps[0], 2 * ps[1])), min(1, max(3 * ps[0], 2 * ps[1], ps[2]))]
    assert [t["p_holm"] for t in tests] == pytest.approx(expected)


def test_summary_shows_intervals_and_names_only_pairs_that_pass(monkeypatch):
    rng = np.random.default_rng(2)
    accs = {"A": rng.normal(0.990, 0.001, 10), "B": rng.normal(0.980, 0.001, 10), "C": rng.normal(0.9801, 0.001, 10)}
    results = pd.DataFrame({
        "optimizer": [k for k in accs for _ in range(10)], "test_acc": np.concatenate(list(accs.values())),
        "test_loss": 0.05, "best_val_acc": 0.99, "sec_per_epoch": 2.0, "epochs": 5,
    })
    monkeypatch.setattr(report, "settings", lambda path: f"{path.stem} lr=1; dropout=0.2")
    summary = report.summarize(results, {name: Path(f"{name}.yaml") for name in "ABC"}, test_images=10_000)
    mean, low, high = (100 * v for v in stats.mean_ci(accs["A"]))
    assert f"| A | A lr=1 | {mean:.2f} | {low:.2f}-{high:.2f} |" in summary
    assert "Every row: dropout=0.2." in summary and "10 seeds per row" in summary
    assert "- A > B: +" in summary and "- A > C: +" in summary
    assert "- B > C" not in summary and "- C > B" not in summary
    assert "seeds on)" in summary and "Holm's correction for 3 tests" in summary


@pytest.mark.parametrize("report_dir", ["docs/optimizers", "docs/long"])
def test_summary_md_is_rewritten_from_its_results_csv(report_dir):
    # The committed summary.md, byte for byte, from the runs in its results.csv (their configs are in the checkout).
    results = pd.read_csv(ROOT / report_dir / "results.csv")
    configs = {label: ROOT / config for label, config in zip(results.optimizer, results.config)}
    assert report.summarize(results, configs, test_images=10_000) == (ROOT / report_dir / "summary.md").read_text()


def test_seeds_needed_is_the_fewest_seeds_from_which_a_pair_stays_different():
    samples = {"a": [0.990, 0.991, 0.989, 0.990, 0.991, 0.990], "b": [0.985, 0.990, 0.980, 0.982, 0.981, 0.983]}
    assert stats.seeds_needed(samples) == {("a", "b"): 5}  # p = 0.44, 0.22, 0.075, 0.020, 0.0057 for 2-6 seeds


def test_settings_name_the_optimizer_model_and_data_arguments(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "trainer": {"max_epochs": 15},
        "model": {"net": {"dropout": 0.2}, "optimizer": {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1}}},
        "data": {"shift": 1},
    }))
    assert report.settings(config) == "SGD lr=0.1; dropout=0.2; shift=1"


def test_unknown_optimizer_lists_the_configs(capsys):
    with pytest.raises(SystemExit, match="use one of adadelta, adam, keras/adadelta, keras/adam, keras/nadam, keras/sgd, nadam, sgd"):
        compare.main(["--optimizers=RMSprop"])


def test_two_config_files_of_one_name_are_refused_not_merged_into_one_row(tmp_path):
    # keras/adam.yaml and adam.yaml were both labelled 'adam': one row, the last one's runs.
    first, second = tmp_path / "a" / "adam.yaml", tmp_path / "b" / "adam.yaml"
    for path in (first, second):
        path.parent.mkdir()
        path.write_text("model:\n  optimizer: Adam\n")
    assert compare.resolve_configs(f"{first},SGD") == {"adam": first, "SGD": compare.CONFIGS / "sgd.yaml"}
    with pytest.raises(DigitnetError, match=f"^{first} and {second} would both be labelled 'adam'"):
        compare.resolve_configs(f"{first},{second}")


def test_without_the_clone_s_configs_a_name_says_to_give_yaml_paths(tmp_path, monkeypatch):
    # Installed from a wheel, configs/optimizers/ is not beside the package: "use one of  or a YAML path".
    monkeypatch.setattr(compare, "CONFIGS", tmp_path / "configs" / "optimizers")
    with pytest.raises(DigitnetError, match=r"no config for 'SGD': .* does not exist .*; give YAML paths"):
        compare.resolve_configs("SGD")


@pytest.mark.parametrize("flags, message", [
    (["--optimizers=,"], "--optimizers ',' names none"),
    (["--out=afile"], "--out afile: a file, not a folder"),
    (["--report_dir=afile"], "--report_dir afile: a file, not a folder"),
])  # fmt: skip
def test_bad_outputs_are_refused_before_any_run_and_leave_the_last_results(mnist_dir, tmp_path, monkeypatch, flags,
                                                                           message):  # fmt: skip
    # --optimizers "" emptied the last results.csv; a file for --out or --report_dir was a traceback, after the runs.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("a file")
    (tmp_path / "cmp").mkdir()
    (tmp_path / "cmp" / "results.csv").write_text("optimizer,seed\nSGD,0\n")
    with pytest.raises(SystemExit, match=f"compare_optimizers: error: {message}"):
        compare.main([f"--data_dir={mnist_dir}", "--optimizers=SGD", "--seeds=1", "--epochs=1", *flags])
    assert (tmp_path / "cmp" / "results.csv").read_text() == "optimizer,seed\nSGD,0\n"
    assert sorted(p.name for p in (tmp_path / "cmp").iterdir()) == ["results.csv"]
