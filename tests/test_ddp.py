"""`fit --trainer.strategy=ddp --trainer.devices=2` on the CPU: Lightning's launcher, gloo, one shard per process."""

import gzip
import hashlib
import json
from collections import Counter

import pytest
import torch

from conftest import idx_bytes, write_mnist
from digitnet import MNISTDataModule
from digitnet.cli import build_cli, main
from helpers import run_digitnet

pytestmark = pytest.mark.slow  # two processes of DDP per test

EPOCHS = 3


def test_two_processes_see_each_training_image_once_per_epoch_and_sync_metrics(tmp_path, capsys):
    mnist = write_mnist(tmp_path / "mnist", n_train=220, n_test=40)
    # Wrong labels on 10 test images at even indices, which the test DistributedSampler gives to rank 0:
    # rank 0 alone would score about 0.5, rank 1 alone about 1.0, the two together about 0.75.
    labels = torch.arange(40) % 10
    labels[0:20:2] = (labels[0:20:2] + 1) % 10
    (mnist / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    record = tmp_path / "record"
    record.mkdir()
    args = ["fit", f"--data.data_dir={mnist}", "--data.val_size=20", "--data.batch_size=16",
            "--model.net.hidden_sizes=[64]", f"--trainer.max_epochs={EPOCHS}", "--trainer.enable_progress_bar=false"]

    ddp = run_digitnet(*args, "--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp",
                           "--trainer.callbacks+=probes.Probe", f"--trainer.callbacks.record={record}")
    assert ddp.returncode == 0, ddp.stderr
    ranks = [json.loads((record / f"rank{r}.json").read_text()) for r in (0, 1)]

    # Lightning's DistributedSampler shards the batches by rank: the 200 training images split 100 + 100, each seen
    # exactly once per epoch, in a new order every epoch.
    datamodule = MNISTDataModule(data_dir=str(mnist), val_size=20)
    datamodule.setup("fit")
    every_image = Counter(hashlib.sha1(x.numpy().tobytes()).hexdigest() for x in datamodule.train_set.tensors[0])
    assert len(every_image) == 200
    for rank in ranks:
        assert rank["train_sampler"] == "DistributedSampler" and rank["checkpoint_io"] == "AtomicCheckpointIO"
        assert rank["seen"]["0"] != rank["seen"]["1"]
    for epoch in map(str, range(EPOCHS)):
        assert len(ranks[0]["seen"][epoch]) == len(ranks[1]["seen"][epoch]) == 100
        assert Counter(ranks[0]["seen"][epoch] + ranks[1]["seen"][epoch]) == every_image

    # The replicas stay identical, and the validation and test metrics are computed over both halves.
    assert ranks[0]["weights_sum"] == ranks[1]["weights_sum"]
    assert ranks[0]["val"] == ranks[1]["val"] and len(ranks[0]["val"]) == EPOCHS
    assert ranks[0]["test"] == ranks[1]["test"]
    ddp_accuracy = ranks[0]["test"]["test/acc"]
    assert f"Test accuracy: {ddp_accuracy:.4f}" in ddp.stdout
    best = ddp.stdout.split("Best checkpoint: ", 1)[1].split("\n", 1)[0]
    cli = build_cli(["test", f"--data.data_dir={mnist}", f"--ckpt_path={tmp_path / best}",
                     "--trainer.enable_progress_bar=false"])
    assert float(cli.trainer.callback_metrics["test/acc"]) == ddp_accuracy  # the same best model, in one process

    # One process trained the same way lands in the same accuracy band.
    main(args)
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("Test loss:"))
    assert abs(float(line.rsplit(" ", 1)[-1]) - ddp_accuracy) <= 0.05
    assert ddp_accuracy >= 0.7
