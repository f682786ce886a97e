"""MNIST as a LightningDataModule: its files read once into tensors on the training device, batches indexed there."""

from __future__ import annotations

import functools
import zlib

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader, TensorDataset

from digitnet.augment import cut_from_neighbours, random_affine, random_shift, random_strokes
from digitnet.negatives import non_digits
from digitnet.strings import Strings, batch_of, make_strings
from digitnet.own_digits import hold_out, read_digit_folder
from digitnet.errors import DigitnetError
from digitnet.predict import collate_images, list_files
from digitnet.mnist import TEST_FILES, TRAIN_FILES, default_data_dir, download, load_split
from digitnet.images import to_input


class TensorBatches(TensorDataset):
    """A TensorDataset indexed a batch at a time (`__getitems__`): per image, indexing costs more than a step."""

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        index = torch.tensor(indices, device=self.tensors[0].device)  # the list converted once, not per tensor
        return tuple(t[index] for t in self.tensors)


class MNISTDataModule(L.LightningDataModule):
    """MNIST's 60,000 training images (less a validation split) and its 10,000 test images.

    Batches are `(images, labels)`: (B, 1, 28, 28) float32 and (B,) int64, on the Trainer's device (`predict` on MNIST
    adds each image's index, on image files gives `ImageBatch`es; training adds (M, 1, 28, 28) `non_digits`).

    Args:
        data_dir: Folder with the four IDX files (gzipped or not), directly or under MNIST/raw/.
            Default: $DIGITNET_DATA_DIR when set, else ./data.
        batch_size: Images per training batch.
        eval_batch_size: Images per validation, test and predict batch of MNIST (image files go `batch_size` at a
            time). With no activations kept for a backward pass, a large batch costs little memory.
        val_size: Training images held out for validation.
        seed: Seed of the random validation split; the same seed gives the same split.
        normalize: Standardize pixels / 255 with MNIST's mean and std; False gives the report's plain pixels / 255.
            validate, test and predict take it, val_size and seed from the checkpoint, as its network was trained.
        download: Download missing files from `mirrors` into `data_dir`.
        mirrors: Base URLs tried in order; default: the MNIST mirrors torchvision lists.
        predict_path: Images to `predict` instead of MNIST's test set: an image file, a folder or a quoted
            glob such as 'scans/*.png'. Each is preprocessed as MNIST was made (digitnet.images).
        shift: Data augmentation: the largest random translation, in pixels, of a training image: each moves by its
            own random dx and dy in [-shift, shift], the uncovered border filled with background (a 0 pixel).
            Validation, test and predict batches are never moved. 0 (the default): off.
        rotate: Data augmentation: the largest random rotation of a training image, in degrees (0: off).
        scale: Data augmentation: the largest random zoom of a training image, as a fraction: 0.1 scales each by a
            factor in [0.9, 1.1] (0: off).
        shear: Data augmentation: the largest random shear of a training image along x, in degrees (0: off).
            With any of rotate, scale and shear on, each image gets its own random affine transform, its
            translation in [-shift, shift] pixels not rounded to whole pixels.
        strokes: Data augmentation: the share of training images whose strokes are redrawn thinner or thicker, faint
            edges cut, as the number reader's ink map draws a photo's (`digitnet.augment.random_strokes`). 0: none.
        neighbours: Data augmentation: the share of training images drawn touching a neighbouring digit and cut
            apart from it as the number reader cuts touching digits (`digitnet.augment.cut_from_neighbours`). 0: none.
        extra_dir: Your own labelled digits, trained on beside MNIST: a folder per digit, `DIR/7/a.png`, any size,
            read as `predict` reads them (`digitnet.own_digits`); a file that cannot be read is skipped with its reason.
        extra_share: The share of each training batch taken from `extra_dir`'s digits (1: them alone).
        extra_hold_out: The share of `extra_dir`'s digits held out of training, to tell how well they are read.
        non_digits: Pictures that are not digits added to each training batch, as a share of its digits (0.25: 32 with
            a batch of 128), made from its digits and random strokes (`digitnet.negatives`), for the model to give no
            digit a high probability on (`--model.non_digit_weight`): the number reader then marks a letter, a scribble
            or a piece of a digit `?`. 0 (the default) adds none.
        strings: Strings of digits (a whole number each, `digitnet.strings`) made from each training batch's digits,
            as a share of them (0.25: 32 with a batch of 128), to train the model's `number_net`, the reader of
            whole numbers; and from each validation batch's, the same ones every epoch, to validate it
            (val/number_acc: the share read exactly). 0 (the default) makes none.
    """

    def __init__(
        self,
        data_dir: str | None = None,
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        val_size: int = 5000,
        seed: int = 0,
        normalize: bool = True,
        download: bool = True,
        mirrors: list[str] | None = None,
        predict_path: str | None = None,
        shift: int = 0,
        rotate: float = 0.0,
        scale: float = 0.0,
        shear: float = 0.0,
        strokes: float = 0.0,
        neighbours: float = 0.0,
        extra_dir: str | None = None,
        extra_share: float = 0.5,
        extra_hold_out: float = 0.2,
        non_digits: float = 0.0,
        strings: float = 0.0,
    ) -> None:
        super().__init__()
        for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size), ("val_size", val_size)):
            if value < 1:
                raise DigitnetError(f"--data.{name} must be at least 1, got {value}")
        if not 0 <= shift < 28:
            raise DigitnetError(f"--data.shift must be between 0 (off) and 27 pixels, got {shift}")
        for name, value, top in (("rotate", rotate, 180), ("scale", scale, 1), ("shear", shear, 60)):
            if not 0 <= value < top:
                raise DigitnetError(f"--data.{name} must be at least 0 (off) and below {top}, got {value}")
        shares = (("strokes", strokes), ("neighbours", neighbours), ("extra_share", extra_share),
                  ("extra_hold_out", extra_hold_out), ("strings", strings))
        for name, value in shares:
            if not 0 <= value <= 1:
                raise DigitnetError(f"--data.{name} must be between 0 and 1, got {value}")
        if not 0 <= non_digits <= 1:
            raise DigitnetError(f"--data.non_digits must be between 0 (none) and 1 (as many as digits), got {non_digits}")
        self.save_hyperparameters()
        self.data_dir = data_dir or default_data_dir()
        # What a 0 and a 255 pixel become in to_input: the fill of moved images and the scale of non-digits' ink.
        self.background = float(to_input(torch.zeros(28, 28), normalize).min())
        self.foreground = float(to_input(torch.full((28, 28), 255), normalize).max())
        self.train_set = self.val_set = self.test_set = None  # TensorBatches of (images, labels)
        self.predict_set = None  # the image files' paths, when predict_path is set
        self.extra_set = self.extra_held_out = None  # TensorBatches of extra_dir's digits, trained on and held out

    def prepare_data(self) -> None:
        if self.hparams.predict_path is not None and self.trainer is not None and self.trainer.predicting:
            return  # predicting image files: MNIST itself is not needed
        # With --data.download=false no mirror is tried: a missing file raises download's message.
        download(self.data_dir, self.hparams.mirrors if self.hparams.download else [])

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict" and self.hparams.predict_path is not None:
            if self.predict_set is None:
                self.predict_set = list_files(self.hparams.predict_path)
            return
        if stage in ("fit", "validate", None) and self.train_set is None:
            images, labels = load_split(self.data_dir, TRAIN_FILES)
            if self.hparams.val_size >= len(labels):
                raise DigitnetError(f"--data.val_size={self.hparams.val_size} leaves no training images: "
                                    f"it must be smaller than the {len(labels)} images in {TRAIN_FILES[0]}")
            order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(self.hparams.seed))
            val, train = order[: self.hparams.val_size], order[self.hparams.val_size :]
            x = to_input(images, self.hparams.normalize)  # (N, 1, 28, 28) float32
            self.train_set, self.val_set = TensorBatches(x[train], labels[train]), TensorBatches(x[val], labels[val])
        if stage in ("fit", "validate", None) and self.hparams.extra_dir and self.extra_set is None:
            x, y, skipped = read_digit_folder(self.hparams.extra_dir, self.hparams.normalize)
            for file, reason in skipped if rank_zero_only.rank == 0 else []:
                print(f"{file}: skipped: {reason}")
            train, held = hold_out(y, self.hparams.extra_hold_out, self.hparams.seed)
            self.extra_set, self.extra_held_out = TensorBatches(x[train], y[train]), TensorBatches(x[held], y[held])
        if stage in ("test", "predict", None) and self.test_set is None:
            images, labels = load_split(self.data_dir, TEST_FILES)
            self.test_set = TensorBatches(to_input(images, self.hparams.normalize), labels)
        # Onto the Trainer's device once it is attached (the CLI reads the data before): no copy per step.
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        for name in ("train_set", "val_set", "test_set", "extra_set", "extra_held_out"):
            dataset = getattr(self, name)
            if dataset is not None and dataset.tensors[0].device != device:
                setattr(self, name, TensorBatches(*(t.to(device) for t in dataset.tensors)))

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        # Training batches, and validation batches for a number net; `trainer.training` is False in validation (fit's
        # too), sanity checks, test and predict. The model summary's example input comes through as a bare tensor.
        hp = self.hparams
        if self.trainer is None or torch.is_tensor(batch):
            return batch
        if self.trainer.validating and hp.strings and self.models_number_net() is not None:
            numbers = self.validation_strings(*batch)  # strings of the batch's own digits, for the number net
            return batch if numbers is None else (*batch, numbers)
        if not self.trainer.training:
            return batch
        if not (hp.rotate or hp.scale or hp.shear or hp.shift or hp.strokes or hp.neighbours or hp.non_digits
                or hp.strings or self.extra_set):  # fmt: skip
            return batch
        x, y = batch  # (B, 1, 28, 28) float32 on the device, (B,) int64
        if self.extra_set is not None and len(self.extra_set):  # the first extra_share of the batch: your digits
            m = round(hp.extra_share * len(y))
            pick = torch.randint(len(self.extra_set), (m,), device=y.device)
            extra_x, extra_y = self.extra_set[pick]
            x, y = torch.cat([extra_x, x[m:]]), torch.cat([extra_y, y[m:]])
        if hp.rotate or hp.scale or hp.shear:
            x = random_affine(x, hp.rotate, hp.scale, hp.shift, hp.shear, self.background)
        elif hp.shift:
            x = random_shift(x, hp.shift, self.background)
        if hp.strokes:  # in ink (0-1, white on black) and back
            x = self.from_ink(random_strokes(self.to_ink(x), hp.strokes))
        if hp.neighbours:
            x = self.from_ink(cut_from_neighbours(self.to_ink(x)[:, 0], hp.neighbours)[:, None])
        extra = []
        ink = self.to_ink(x)[:, 0] if hp.non_digits or hp.strings else None  # (B, 28, 28) in [0, 1]
        if hp.non_digits:  # (M, 1, 28, 28) non-digits, made from the batch's digits
            made = non_digits(ink, y, max(1, round(hp.non_digits * len(x))))
            extra.append(self.from_ink(made)[:, None])
        if hp.strings and (numbers := self.strings_of(ink, y)) is not None:
            extra.append(numbers)
        return (x, y, *extra)

    def strings_of(self, ink: torch.Tensor, y: torch.Tensor, seed: int | None = None) -> Strings | None:
        """Whole numbers of these (B, 28, 28) digits, with a mark that is no digit now and then, as model input; None
        if the digits have no ink. Random from torch's generator (seed_everything's), and from `seed` if given."""
        count = max(1, round(self.hparams.strings * len(y)))
        marks = non_digits(ink, y, max(1, count // 2), kinds=STRING_MARKS)
        strips, texts = make_strings(ink, y, count, marks, seed=int(torch.randint(2**31, ())) if seed is None else seed)
        if not strips:
            return None
        numbers = batch_of(strips, texts)
        return numbers._replace(images=self.from_ink(numbers.images).to(ink.device))

    def validation_strings(self, x: torch.Tensor, y: torch.Tensor) -> Strings | None:
        """`strings_of` a validation batch, the same strings every epoch: seeded by the batch's labels, from a fork of
        torch's generator, so that validating leaves the training's random numbers as they were."""
        seed = zlib.crc32(y.cpu().numpy().tobytes())
        with torch.random.fork_rng(devices=[] if x.device.type == "cpu" else [x.device], device_type=x.device.type):
            torch.manual_seed(seed)
            return self.strings_of(self.to_ink(x)[:, 0], y, seed)

    def models_number_net(self) -> torch.nn.Module | None:
        """The number net of the model the Trainer runs, if any."""
        model = self.trainer.lightning_module if self.trainer is not None else None
        return getattr(model, "number_net", None)

    def to_ink(self, x: torch.Tensor) -> torch.Tensor:
        """Model input -> ink in [0, 1], white on black."""
        return ((x - self.background) / (self.foreground - self.background)).clamp(0, 1)

    def from_ink(self, ink: torch.Tensor) -> torch.Tensor:
        return self.background + ink * (self.foreground - self.background)

    def _loader(self, dataset: TensorBatches, batch_size: int, shuffle: bool = False) -> DataLoader:
        # No workers: a batch costs one index operation, worker processes would add IPC.
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, collate_fn=tuple)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.hparams.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, self.hparams.eval_batch_size)

    def predict_dataloader(self) -> DataLoader:
        if self.hparams.predict_path is None:  # MNIST's test set, with each image's index to name it by
            images, labels = self.test_set.tensors
            indexed = TensorBatches(images, labels, torch.arange(len(labels), device=labels.device))
            return self._loader(indexed, self.hparams.eval_batch_size)
        # Decoding a photo takes far longer than the network: batch_size files a batch, so the bar moves.
        keep_ink = self.models_number_net() is not None  # for the number net to read (digitnet.predict)
        collate = functools.partial(collate_images, normalize=self.hparams.normalize, keep_ink=keep_ink)
        return DataLoader(self.predict_set, batch_size=self.hparams.batch_size, collate_fn=collate)


# What acts on batches, not on the stored tensors (digitnet.augment moves each batch on the device).
BATCH_SETTINGS = ("batch_size", "eval_batch_size", "shift", "rotate", "scale", "shear", "strokes", "neighbours",
                  "non_digits", "strings")
# The marks that stand for "?" in a string: no pair, which in a string is two digits.
STRING_MARKS = ("piece", "strokes", "blot", "mirror", "crossed")


def reuse_data(datamodule: MNISTDataModule, cache: dict, stages: tuple[str, ...] = ("fit", "test")) -> None:
    """Let many runs in one process share MNIST's tensors, read and scaled once per setting of all but BATCH_SETTINGS:
    the first datamodule of a setting is set up for `stages` and its datasets kept in `cache` for the next ones."""
    stored = {k: v for k, v in datamodule.hparams.items() if k not in BATCH_SETTINGS}
    key = tuple(sorted((k, repr(v)) for k, v in stored.items())) + (datamodule.data_dir, stages)
    if key not in cache:
        datamodule.prepare_data()
        for stage in stages:
            datamodule.setup(stage)
        cache[key] = (datamodule.train_set, datamodule.val_set, datamodule.test_set)
    datamodule.train_set, datamodule.val_set, datamodule.test_set = cache[key]
