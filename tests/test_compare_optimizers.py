"""scripts/compare_optimizers.py on the tiny synthetic MNIST, and the config files it reads."""

import importlib.util
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from digitnet.cli import build_cli, main

ROOT = Path(__file__).parents[1]
OPTIMIZER_CONFIGS = sorted((ROOT / "configs" / "optimizers").glob("*.yaml"))
PRESETS = sorted((ROOT / "configs").glob("*.yaml"))


def load_script():
    spec = importlib.util.spec_from_file_location("compare_optimizers", ROOT / "scripts" / "compare_optimizers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def script():
    return load_script()


def test_the_report_s_four_optimizers_have_configs():
    assert sorted(p.stem for p in OPTIMIZER_CONFIGS) == ["adadelta", "adam", "nadam", "sgd"]


@pytest.mark.parametrize("config", OPTIMIZER_CONFIGS + PRESETS, ids=lambda p: p.name)
def test_the_cli_accepts_each_config(config, mnist_dir):
    main(["fit", f"--config={config}", f"--data.data_dir={mnist_dir}", "--data.val_size=20", "--trainer.fast_dev_run=true"])


def test_one_optimizer_one_seed_one_epoch(script, mnist_dir, tmp_path, capsys):
    out = tmp_path / "cmp"
    script.main([f"--data_dir={mnist_dir}", f"--out={out}", "--optimizers=SGD", "--seeds=1", "--epochs=1",
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
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((out / "SGD" / "seed_0").glob("events.out.tfevents.*"))  # TensorBoard run folder
    lines = capsys.readouterr().out.splitlines()
    assert "SGD seed 0: test acc" in lines[0] and lines[-1].startswith("1 runs in")


def test_a_run_is_the_cli_s_fit_with_that_config_and_seed(script, mnist_dir, tmp_path):
    # The script trains through the CLI: the same config and seed end in the same weights as
    # `python -m digitnet fit --config ... --seed_everything ...`.
    common = ["--data.val_size=20", "--data.batch_size=32"]
    script.main([f"--data_dir={mnist_dir}", f"--out={tmp_path / 'cmp'}", "--optimizers=Adam", "--seeds=2", "--epochs=2", *common])
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
    assert {k: actual[k] for k in expected} == expected


def test_curves_come_from_the_event_files(script, mnist_dir, tmp_path):
    script.main([f"--data_dir={mnist_dir}", f"--out={tmp_path}", "--optimizers=SGD,Adam", "--seeds=2", "--epochs=3",
                 "--data.val_size=20"])
    results = pd.read_csv(tmp_path / "results.csv")
    curves = script.read_curves({(r.optimizer, r.seed): r.log_dir for r in results.itertuples()})
    assert len(curves) == 2 * 2 * 3 and sorted(curves.epoch.unique()) == [1, 2, 3]
    # The best epoch's val/acc in the event file is the score the checkpoint callback kept.
    best = curves.groupby(["optimizer", "seed"]).val_acc.max()
    assert best.values == pytest.approx(results.set_index(["optimizer", "seed"]).loc[best.index].best_val_acc.values)


def test_summary_names_only_separated_pairs(script, monkeypatch):
    results = pd.DataFrame({
        "optimizer": ["A"] * 3 + ["B"] * 3 + ["C"] * 3,
        "test_acc": [0.990, 0.991, 0.992, 0.980, 0.981, 0.982, 0.9805, 0.9815, 0.9825],
        "test_loss": [0.05] * 9, "best_val_acc": [0.99] * 9, "sec_per_epoch": [2.0] * 9, "epochs": [5] * 9,
    })
    configs = {name: Path("none.yaml") for name in "ABC"}
    monkeypatch.setattr(script, "settings", lambda path: "-")
    summary = script.summarize(results, configs, test_images=10_000)
    assert "| A | - | 99.10 ± 0.10 |" in summary
    assert "- A > B: +1.00 points" in summary and "- A > C: +0.95 points" in summary
    assert "B > C" not in summary and "C > B" not in summary  # overlapping ranges


def test_settings_name_the_optimizer_model_and_data_arguments(script, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "trainer": {"max_epochs": 15},
        "model": {"dropout": 0.2, "optimizer": {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1}}},
        "data": {"shift": 1},
    }))
    assert script.settings(config) == "SGD lr=0.1; dropout=0.2; shift=1"


def test_unknown_optimizer_lists_the_configs(script, capsys):
    with pytest.raises(SystemExit, match="use one of adadelta, adam, nadam, sgd"):
        script.main(["--optimizers=RMSprop"])


def test_readme_block_is_replaced(script, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- begin docs/a/summary.md -->\nold\n<!-- end docs/a/summary.md -->\nafter\n")
    script.update_readme(readme, "docs/a/summary.md", "new table\n")
    assert readme.read_text() == "# x\n<!-- begin docs/a/summary.md -->\nnew table\n<!-- end docs/a/summary.md -->\nafter\n"
