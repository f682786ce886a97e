"""Trains on the real MNIST; skipped when it is absent (set DIGITNET_DATA_DIR)."""

import pytest

from digitnet.cli import main

pytestmark = pytest.mark.slow  # training on the real MNIST


def test_one_epoch_of_adam_reaches_96_percent(real_mnist, capsys):
    main(["fit", f"--data.data_dir={real_mnist}", "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false"])
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("Test loss:"))
    accuracy = float(line.rsplit(" ", 1)[-1])
    assert accuracy >= 0.96, line
