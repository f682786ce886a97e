"""A model trained on the real MNIST reads photos made from MNIST test digits; skipped when MNIST is absent."""

import pytest
import csv

import numpy as np

from digitnet.cli import main
from digitnet.mnist import TEST_FILES, load_split
from digitnet.checkpoints import default_checkpoint
from photos import KINDS, save_photo

pytestmark = pytest.mark.slow  # training on the real MNIST


def test_two_epochs_read_97_percent_of_200_photos_of_test_digits(real_mnist, tmp_path, capsys):
    main(["fit", f"--data.data_dir={real_mnist}", "--trainer.max_epochs=2", "--trainer.enable_progress_bar=false"])
    images, labels = load_split(real_mnist, TEST_FILES)
    rng = np.random.default_rng(2024)
    (tmp_path / "photos").mkdir()
    for n, i in enumerate(rng.choice(len(labels), 200, replace=False).tolist()):
        save_photo(images[i].numpy(), tmp_path / "photos" / f"{n:03d}_label{labels[i]}", rng, KINDS[n % len(KINDS)])
    ckpt = default_checkpoint(tmp_path / "lightning_logs")[0]
    main(["predict", f"--ckpt_path={ckpt}", "--data.predict_path=photos", "--output=photos.csv",
          "--trainer.enable_progress_bar=false"])  # fmt: skip
    with open(tmp_path / "photos.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 200 and not any(row["error"] for row in rows)
    right = [row["digit"] == row["file"].rsplit("_label", 1)[1][0] for row in rows]
    assert np.mean(right) >= 0.97, f"{sum(right)} of 200 photos read right"
