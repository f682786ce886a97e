import copy
import pickle
import re
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from digitnet import ConvNet, DigitClassifier, MLP
from digitnet.cli import build_cli
from digitnet.errors import DigitnetError

OPTIMIZER_ARGS = {
    "SGD": ["--model.optimizer=SGD", "--model.optimizer.lr=0.05", "--model.optimizer.momentum=0.9"],
    "Adam": ["--model.optimizer=Adam"],
    "NAdam": ["--model.optimizer=NAdam"],
    "Adadelta": ["--model.optimizer=Adadelta", "--model.optimizer.lr=1.0"],
}


def test_mlp_mirrors_the_keras_model():
    net = MLP()
    linears = [m for m in net if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 512), (512, 512), (512, 10)]
    assert [m.p for m in net if isinstance(m, nn.Dropout)] == [0.2, 0.2]
    assert sum(p.numel() for p in net.parameters()) == 669_706  # Keras's model.summary() total
    assert net(torch.rand(3, 1, 28, 28)).shape == (3, 10)


@pytest.mark.parametrize("name", OPTIMIZER_ARGS)
def test_each_optimizer_from_the_cli_lowers_the_loss(name, mnist_dir):
    cli = build_cli(OPTIMIZER_ARGS[name] + [f"--data.data_dir={mnist_dir}"], run=False)
    model = cli.model
    optimizer = model.make_optimizer(model.parameters())
    assert type(optimizer).__name__ == name
    torch.manual_seed(0)
    x, y = torch.randn(64, 1, 28, 28), torch.arange(64) % 10
    model.eval()  # no dropout: the loss before and after is comparable
    first = nn.functional.cross_entropy(model(x), y).item()
    model.train()
    for _ in range(20):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    model.eval()
    assert nn.functional.cross_entropy(model(x), y).item() < 0.5 * first


@pytest.mark.parametrize("net", [MLP, ConvNet])
@pytest.mark.parametrize("dropout", [1.0, -0.1])
def test_bad_dropout(net, dropout):
    with pytest.raises(DigitnetError, match=r"--model.net.dropout must be in \[0, 1\)"):
        net(dropout=dropout)


@pytest.mark.parametrize(("settings", "reason"), [
    ({"optimizer": "Adam"}, r"optimizer='Adam': give a class, .* functools.partial\(torch.optim.SGD, lr=0.1\)"),
    ({"optimizer": {"class_path": "SGD", "init_args": {"lr": 0.1}}}, "optimizer=.*give a class"),
    ({"lr_scheduler": "StepLR"}, r"lr_scheduler='StepLR': .* functools.partial\(torch.optim.lr_scheduler.StepLR"),
])  # fmt: skip
def test_an_optimizer_named_by_a_string_is_refused_when_the_model_is_built(settings, reason):
    with pytest.raises(DigitnetError, match=reason):
        DigitClassifier(**settings)


def test_plain_python_use_and_checkpoint_reload(tmp_path):
    import lightning as L

    model = DigitClassifier(net=MLP(hidden_sizes=(32, 16), dropout=0.1))
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, max_epochs=0)
    trainer.strategy.connect(model)
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    reloaded = DigitClassifier.load_from_checkpoint(path)
    x = torch.randn(5, 1, 28, 28)
    model.eval(), reloaded.eval()
    assert torch.equal(model(x), reloaded(x))
    assert reloaded.hparams.net == {"class_path": "digitnet.nets.MLP", "init_args": {"hidden_sizes": [32, 16], "dropout": 0.1}}
    assert reloaded.net.hidden_sizes == (32, 16) and reloaded.net.dropout == 0.1


class TinyNet(nn.Module):
    """A network of the user's own, for --model.net=test_model.TinyNet: keeps its argument as an attribute."""

    def __init__(self, hidden: int = 8) -> None:
        super().__init__()
        self.hidden = hidden
        self.layers = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def save(model, path):
    import lightning as L

    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, max_epochs=0)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    return path


def test_convnet_is_small_and_maps_images_to_logits():
    net = ConvNet()
    assert 35_000 < sum(p.numel() for p in net.parameters()) < 150_000  # small: 141,418 at width 32 (docs/nets.md)
    assert net(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    assert sum(p.numel() for p in ConvNet(width=48).parameters()) > sum(p.numel() for p in net.parameters())
    with pytest.raises(DigitnetError, match="--model.net.width must be at least 1, got 0"):
        ConvNet(width=0)


@pytest.mark.parametrize("net", [MLP(), ConvNet(width=4)], ids=["MLP", "ConvNet"])
def test_a_slice_of_a_network_is_its_layers_a_feature_extractor(net):
    features = net[:-1]  # all but the last linear layer
    assert type(features) is nn.Sequential and list(features) == list(net)[:-1]
    assert features(torch.zeros(2, 1, 28, 28)).shape == (2, net[-1].in_features)
    assert net[-1] is list(net)[-1]


def test_a_reading_prints_in_a_line_and_no_pictures_are_no_predictions():
    import numpy as np
    from photos import drawn_digits

    from digitnet import DigitRecognizer

    recognizer = DigitRecognizer(MLP())  # untrained: what is read does not matter here, how it prints does
    reading = recognizer.read_number(np.hstack([drawn_digits()["one"], drawn_digits()["seven"]]))
    assert reading.digits and all(d.pixels.shape == (28, 28) for d in reading.digits)
    assert "pixels" not in repr(reading) and len(repr(reading)) < 300 * len(reading.digits)
    assert recognizer.predict_many([]) == []
    # An (N, 28, 28) array or tensor, as predict's own error for one says: `not images` was ambiguous for it.
    batch = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    expected = recognizer.predict_many(list(batch))
    assert recognizer.predict_many(batch) == expected and recognizer.predict_many(torch.from_numpy(batch)) == expected
    assert recognizer.predict_many(image for image in batch) == expected


def test_pool_first_pools_before_batch_norm_and_relu_and_older_convnet_checkpoints_keep_their_order(tmp_path):
    after, first = ConvNet(width=4), ConvNet(width=4, pool_first=True)
    assert [p.shape for p in after.parameters()] == [p.shape for p in first.parameters()]

    def before_pools(net):  # the kinds of layer that each max-pooling follows
        return {type(net[i - 1]) for i, layer in enumerate(net) if isinstance(layer, nn.MaxPool2d)}

    assert before_pools(after) == {nn.ReLU} and before_pools(first) == {nn.Conv2d}
    assert first(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    # A checkpoint written before pool_first existed has no such setting: it reloads in the order it was trained in.
    model = DigitClassifier(net=ConvNet(width=4))
    checkpoint = torch.load(save(model, tmp_path / "m.ckpt"), weights_only=True)
    del checkpoint["hyper_parameters"]["net"]["init_args"]["pool_first"]
    torch.save(checkpoint, tmp_path / "old.ckpt")
    reloaded = DigitClassifier.load_from_checkpoint(tmp_path / "old.ckpt")
    x = torch.randn(3, 1, 28, 28)
    model.eval()
    reloaded.eval()
    assert reloaded.net.pool_first is False and torch.equal(model(x), reloaded(x))


@pytest.mark.parametrize(
    "net", [ConvNet(width=4, dropout=0.3), ConvNet(width=4, pool_first=True), MLP(hidden_sizes=(8,)), TinyNet(hidden=5)]
)
def test_python_built_model_reloads_from_its_checkpoint_alone(tmp_path, net):
    import functools

    # The README's "train in your own code": a network object and a functools.partial optimizer. Both are
    # saved as plain settings, so torch.load's default weights_only=True reads the checkpoint.
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "not rebuilt by the __init__ arguments" for a network that is
        model = DigitClassifier(net=net, optimizer=functools.partial(torch.optim.SGD, lr=0.1, momentum=0.5))
    reloaded = DigitClassifier.load_from_checkpoint(save(model, tmp_path / "m.ckpt"))
    assert type(reloaded.net) is type(net)
    assert {k: getattr(reloaded.net, k) for k in vars(net) if not k.startswith("_") and k != "training"} == {
        k: getattr(net, k) for k in vars(net) if not k.startswith("_") and k != "training"}  # fmt: skip
    x = torch.randn(5, 1, 28, 28)
    model.eval(), reloaded.eval()
    assert torch.equal(model(x), reloaded(x))
    optimizer = reloaded.make_optimizer(reloaded.parameters())
    assert type(optimizer) is torch.optim.SGD
    assert optimizer.defaults["lr"] == 0.1 and optimizer.defaults["momentum"] == 0.5


class LayerNamedAsItsArgument(TinyNet):
    def __init__(self, hidden: int = 8) -> None:
        super().__init__(hidden)
        self.hidden = nn.Identity()  # the argument's name reused for a layer: the settings would hold a module


@pytest.mark.parametrize("net", [nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), LayerNamedAsItsArgument()])
def test_a_network_its_settings_do_not_rebuild_warns_and_reloads_when_given(tmp_path, net):
    # Saved as an empty nn.Sequential, or with a module in its settings: the checkpoint did not reload, silently.
    with pytest.warns(UserWarning, match=r"is not rebuilt by the __init__ arguments .*load_from_checkpoint\(path, net="):
        model = DigitClassifier(net=net)
    path = save(model, tmp_path / "m.ckpt")
    with pytest.warns(UserWarning, match="is not rebuilt"):
        reloaded = DigitClassifier.load_from_checkpoint(path, net=copy.deepcopy(net), weights_only=False)
    x = torch.randn(3, 1, 28, 28)
    assert torch.equal(model.eval()(x), reloaded.eval()(x))


def test_a_checkpoint_mapped_to_a_missing_gpu_blames_the_device_not_the_file(tmp_path, monkeypatch):
    from digitnet import DigitRecognizer

    path = save(DigitClassifier(net=TinyNet()), tmp_path / "m.ckpt")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a machine without a GPU, as CI's
    for where in ("cuda", torch.device("cuda:0")):
        with pytest.raises(DigitnetError, match=r"map_location='cuda(:0)?': torch finds no CUDA device here; use"):
            DigitRecognizer.from_checkpoint(path, map_location=where)
    with pytest.raises(DigitnetError, match=r"map_location='gpu': not a device torch knows; use 'cpu' or 'cuda'"):
        DigitRecognizer.from_checkpoint(path, map_location="gpu")


def test_a_checkpoint_whose_network_cannot_be_imported_says_so(tmp_path, capsys):
    from digitnet import DigitRecognizer

    path = save(DigitClassifier(net=TinyNet()), tmp_path / "m.ckpt")
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["hyper_parameters"]["net"]["class_path"] = "__main__.TinyNet"  # as a notebook's class is named
    torch.save(checkpoint, path)
    reason = r"its network, __main__.TinyNet, cannot be imported here \(.*TinyNet.*\): import the module"
    with pytest.raises(DigitnetError, match=reason):
        DigitRecognizer.from_checkpoint(path)
    # And the commands say so, not jsonargparse's "Does not validate against any of the Union subtypes".
    from digitnet.cli import main

    for command in ("test", "predict", "validate"):
        with pytest.raises(SystemExit) as exit_:
            main([command, f"--ckpt_path={path}"])
        assert exit_.value.code == 2 and re.search(reason, capsys.readouterr().err)


@pytest.mark.parametrize("x", [torch.zeros(1, 28, 28), torch.zeros(2, 784), torch.zeros(1, 3, 28, 28),
                               torch.zeros(1, 1, 32, 32), torch.zeros(1, 1, 28, 28, dtype=torch.uint8)])  # fmt: skip
def test_convnet_names_the_input_it_takes(x):
    shown = re.escape(f"got {tuple(x.shape)} {x.dtype}")
    with pytest.raises(DigitnetError, match=r"ConvNet takes float \(N, 1, 28, 28\) images .*" + shown):
        ConvNet(width=4)(x)


def test_the_network_is_chosen_on_the_command_line(mnist_dir):
    cli = build_cli(["--model.net=ConvNet", "--model.net.width=4", f"--data.data_dir={mnist_dir}"], run=False)
    assert type(cli.model.net) is ConvNet and cli.model.net.width == 4
    cli = build_cli(["--model.net=test_model.TinyNet", "--model.net.hidden=3", f"--data.data_dir={mnist_dir}"],
                    run=False)  # fmt: skip
    assert type(cli.model.net).__name__ == "TinyNet" and cli.model.net.hidden == 3
    cli = build_cli(["--model.net.dropout=0.4", f"--data.data_dir={mnist_dir}"], run=False)  # the default MLP's
    assert type(cli.model.net) is MLP and cli.model.net.dropout == 0.4 and cli.model.net.hidden_sizes == (512, 512)
    # A bare MLP is digitnet's, though torchvision.ops has an MLP too (imported: jsonargparse would see both).
    import torchvision.ops  # noqa: F401

    for spelling in (["--model.net=MLP"], ["--model.net", "MLP"]):
        cli = build_cli([*spelling, "--model.net.dropout=0.3", f"--data.data_dir={mnist_dir}"], run=False)
        assert type(cli.model.net) is MLP and cli.model.net.dropout == 0.3


def test_a_cli_trained_convnet_reloads_everywhere_with_identical_logits(mnist_dir, capsys):
    from digitnet import DigitRecognizer
    from digitnet.cli import main

    main(["fit", "--model.net=ConvNet", "--model.net.width=4", f"--data.data_dir={mnist_dir}", "--data.val_size=20",
          "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false", "--test_figures.mistakes=0"])
    (best,) = Path("lightning_logs/ConvNet-Adam/version_0/checkpoints").glob("best-*.ckpt")
    model = DigitClassifier.load_from_checkpoint(best).eval()
    assert type(model.net) is ConvNet and model.net.width == 4
    recognizer = DigitRecognizer.from_checkpoint(best)
    x = torch.randn(6, 1, 28, 28)
    assert torch.equal(model(x), recognizer.net(x))
    main(["test", f"--ckpt_path={best}", f"--data.data_dir={mnist_dir}", "--trainer.enable_progress_bar=false"])
    assert "test/acc" in capsys.readouterr().out


def test_cosine_decay_reaches_zero_at_the_last_step(mnist_dir):
    import lightning as L

    from digitnet import MNISTDataModule

    model = DigitClassifier(net=MLP(hidden_sizes=(16,)))
    lrs = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, *args):
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    trainer = L.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        callbacks=[Record()], limit_val_batches=0)
    trainer.fit(model, MNISTDataModule(data_dir=str(mnist_dir), batch_size=20, val_size=20))
    assert len(lrs) == 10 and lrs[0] == pytest.approx(1e-3)
    assert all(a > b for a, b in zip(lrs, lrs[1:])) and lrs[-1] < 0.03e-3


def test_dropout_keeps_units_with_probability_one_minus_p_and_rescales():
    from digitnet.nets import Dropout

    layer = Dropout(0.2)
    x = torch.ones(1000, 512, requires_grad=True)
    y = layer(x)
    kept = (y != 0).float().mean().item()
    assert abs(kept - 0.8) < 0.005
    assert torch.allclose(y[y != 0], torch.tensor(1.25))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # gradient flows through kept units only, scaled alike
    layer.eval()
    assert torch.equal(layer(x), x)


def test_a_reloaded_cli_checkpoint_trained_on_saves_one_that_reloads(mnist_dir, tmp_path):
    # Reloaded through Lightning's instantiator, the optimizer was jsonargparse's callable, pickled into the next
    # checkpoint: DigitClassifier.load_from_checkpoint and predict refused it (weights_only).
    import lightning as L

    from digitnet import MNISTDataModule
    from digitnet.cli import main

    main(["fit", "--model.optimizer=SGD", "--model.optimizer.lr=0.05", f"--data.data_dir={mnist_dir}",
          "--data.val_size=20", "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false",
          "--test_figures.mistakes=0"])  # fmt: skip
    (best,) = Path("lightning_logs/SGD/version_0/checkpoints").glob("best-*.ckpt")
    model = DigitClassifier.load_from_checkpoint(best)
    trainer = L.Trainer(max_steps=2, limit_val_batches=0, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(model, MNISTDataModule(data_dir=str(mnist_dir), val_size=20))
    trainer.save_checkpoint(tmp_path / "again.ckpt")
    again = DigitClassifier.load_from_checkpoint(tmp_path / "again.ckpt")  # weights_only, as predict reads it
    settings = torch.load(best, weights_only=True)["hyper_parameters"]["optimizer"]
    assert again.hparams.optimizer["init_args"] == settings["init_args"] and settings["init_args"]["lr"] == 0.05
    assert again.hparams.optimizer["class_path"] in ("torch.optim.SGD", "torch.optim.sgd.SGD")
    assert type(again.make_optimizer(again.parameters())) is torch.optim.SGD


def test_optimizers_are_fused_unless_configured():
    import functools

    from digitnet.optim import fused_if_available

    params = list(MLP(hidden_sizes=(8,)).parameters())
    assert fused_if_available(torch.optim.Adam, params).defaults["fused"] is True
    assert fused_if_available(functools.partial(torch.optim.Adam, fused=False), params).defaults["fused"] is False
    assert type(fused_if_available(torch.optim.Adadelta, params)) is torch.optim.Adadelta  # none to fuse
    optimizer = DigitClassifier(cosine_decay=False).configure_optimizers()
    assert type(optimizer) is torch.optim.Adam and optimizer.defaults["fused"] is True
    # A function taking the parameters, as the docstring invites: it takes no `fused` (a TypeError at fit's start).
    made = fused_if_available(lambda p: torch.optim.SGD(p, lr=0.1), params)
    assert type(made) is torch.optim.SGD and made.defaults["lr"] == 0.1


@pytest.mark.parametrize("clip", [None, 1e-3])
def test_trainer_gradient_clipping_still_applies(clip, mnist_dir):
    import lightning as L

    from digitnet import MNISTDataModule

    norms = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args):
            grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
            norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())

    trainer = L.Trainer(max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        callbacks=[Record()], limit_val_batches=0, gradient_clip_val=clip)
    model = DigitClassifier(net=MLP(hidden_sizes=(16,)), optimizer=torch.optim.SGD)
    trainer.fit(model, MNISTDataModule(data_dir=str(mnist_dir), batch_size=20, val_size=20))
    assert len(norms) == 3
    if clip is None:
        assert min(norms) > 0.01  # an untrained model's gradients are far larger than the clip below
    else:
        assert max(norms) <= clip * 1.01


def test_torch_compile_traces_each_step_once(mnist_dir, monkeypatch):
    """--model.compile=true compiles the network: after the first epoch (its batch sizes, training and
    validation), nothing is traced again; torch.compiler's "fail_on_recompile" stance raises if something is."""
    import lightning as L

    from digitnet import MNISTDataModule

    compiled = []

    def eager_compile(fn, **kwargs):  # dynamo's tracing without code generation: the same guards, fast
        compiled.append(fn)
        return real_compile(fn, **{**kwargs, "backend": "eager"})

    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", eager_compile)

    class FailOnRecompile(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch == 1:
                torch.compiler.set_stance("fail_on_recompile")

    trainer = L.Trainer(max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, log_every_n_steps=2, callbacks=[FailOnRecompile()])
    model = DigitClassifier(net=MLP(hidden_sizes=(16,)), compile=True)
    try:
        trainer.fit(model, MNISTDataModule(data_dir=str(mnist_dir), batch_size=20, val_size=20))
    finally:
        torch.compiler.set_stance("default")
    assert len(compiled) == 1  # the network, once
    assert trainer.current_epoch == 3 and "train/acc" in trainer.callback_metrics
    assert all(name.startswith("net.") for name in model.state_dict())  # the checkpoint's names, as uncompiled


def test_a_checkpoint_holding_python_objects_is_a_one_line_error(tmp_path, mnist_dir, capsys):
    import functools

    from digitnet import DigitRecognizer
    from digitnet.cli import main

    # A checkpoint whose settings hold a Python object (a functools.partial optimizer), which weights_only refuses.
    torch.save({"state_dict": {f"net.{k}": v for k, v in MLP(hidden_sizes=(16,)).state_dict().items()},
                "hyper_parameters": {"net": {"class_path": "digitnet.nets.MLP", "init_args": {"hidden_sizes": [16]}},
                                     "optimizer": functools.partial(torch.optim.SGD, lr=0.1)},
                "pytorch-lightning_version": "2.6.6"}, tmp_path / "partial.ckpt")  # fmt: skip
    with pytest.raises(DigitnetError, match=r"partial.ckpt: holds Python objects .* weights_only=False\)?$"):
        DigitRecognizer.from_checkpoint(tmp_path / "partial.ckpt")
    assert DigitRecognizer.from_checkpoint(tmp_path / "partial.ckpt", weights_only=False).net(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
    (tmp_path / "junk.ckpt").write_text("not a checkpoint")
    (tmp_path / "noise.ckpt").write_bytes(bytes(range(1, 256)) * 16)  # not a zip, not a pickle
    for name in ("junk.ckpt", "noise.ckpt"):
        with pytest.raises(DigitnetError, match=rf"{name}: not a checkpoint \(not a file that torch.save writes\)$"):
            DigitRecognizer.from_checkpoint(tmp_path / name)
    # A pickle passes for torch.save's legacy format (its first byte, b"\x80"), and torch.load is left to judge it.
    (tmp_path / "pickle.ckpt").write_bytes(pickle.dumps({"state_dict": {}}, protocol=2))
    with pytest.raises(DigitnetError, match=r"pickle.ckpt: not a checkpoint torch can read \("):
        DigitRecognizer.from_checkpoint(tmp_path / "pickle.ckpt")
    for name in ("partial.ckpt", "junk.ckpt", "noise.ckpt", "pickle.ckpt"):
        with pytest.raises(SystemExit) as exit:
            main(["predict", f"--ckpt_path={tmp_path / name}", f"--data.data_dir={mnist_dir}"])
        error = capsys.readouterr().err.strip()
        assert exit.value.code == 2 and "\n" not in error and error.startswith("python -m digitnet predict: error:")
