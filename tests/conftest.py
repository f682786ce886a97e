"""Shared fixtures: tiny MNIST-shaped IDX files written into tmp_path, and the real data when present."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import pytest
import torch

from digitnet.checkpoints import default_checkpoint
from digitnet.cli import main

REAL_MNIST = Path(os.environ.get("DIGITNET_DATA_DIR", Path(__file__).parents[2] / "shared" / "mnist"))


def idx_bytes(tensor: torch.Tensor) -> bytes:
    """The reverse of the reader: IDX header (magic, sizes) followed by the uint8 data."""
    magic = {1: 0x00000801, 3: 0x00000803}[tensor.dim()]
    return struct.pack(f">I{tensor.dim()}I", magic, *tensor.shape) + tensor.to(torch.uint8).numpy().tobytes()


def synthetic_digits(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 28, 28) uint8 images whose label is where a bright bar lies, plus noise: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    images = torch.randint(0, 60, (n, 28, 28), generator=g, dtype=torch.uint8)
    for i, label in enumerate(labels.tolist()):
        images[i, 2 + 2 * label : 4 + 2 * label, 4:24] = 255
    return images, labels


def write_mnist(folder: Path, n_train: int = 120, n_test: int = 40, gz: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = synthetic_digits(n, seed)
        for name, tensor in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
            raw = idx_bytes(tensor)
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
            else:
                (folder / name).write_bytes(raw)
    return folder


def tiny_run(root: Path, *args: str) -> tuple[Path, Path]:
    """(checkpoint, data folder): one epoch of `python -m digitnet fit` on synthetic digits written into `root`,
    its run under `root`/lightning_logs; ARGS come last, so they may change any of those settings."""
    data = write_mnist(root / "mnist")
    main(["fit", f"--data.data_dir={data}", "--data.val_size=20", "--data.batch_size=32", "--trainer.max_epochs=1",
          "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={root}", *args])  # fmt: skip
    return default_checkpoint(root / "lightning_logs")[0], data


def custom_scalar_charts(run: Path) -> dict[str, list[str]]:
    """The charts of the Custom Scalars layout written into a run's folder: each one's title and tags."""
    from tensorboard.backend.event_processing.event_accumulator import (
        TENSORS,
        EventAccumulator,
    )
    from tensorboard.plugins.custom_scalar import layout_pb2, metadata

    layouts = []
    for events in run.glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events), size_guidance={TENSORS: 0})
        accumulator.Reload()
        if metadata.CONFIG_SUMMARY_TAG in accumulator.Tags()[TENSORS]:
            (event,) = accumulator.Tensors(metadata.CONFIG_SUMMARY_TAG)
            layouts.append(layout_pb2.Layout.FromString(event.tensor_proto.string_val[0]))
    (layout,) = layouts
    return {chart.title: list(chart.multiline.tag) for category in layout.category for chart in category.chart}


@pytest.fixture
def mnist_dir(tmp_path: Path) -> Path:
    """A folder with the four files of a tiny synthetic MNIST (120 training, 40 test images), gzipped."""
    return write_mnist(tmp_path / "mnist")


@pytest.fixture
def real_mnist() -> Path:
    from digitnet.mnist import FILES, find_file

    if not all(find_file(REAL_MNIST, name) for name in FILES):
        pytest.skip(f"real MNIST not found in {REAL_MNIST} (set DIGITNET_DATA_DIR)")
    return REAL_MNIST


@pytest.fixture(autouse=True)
def _run_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs write lightning_logs/ under tmp_path, never into the source tree."""
    monkeypatch.chdir(tmp_path)
