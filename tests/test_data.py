import functools
import gzip
import hashlib
import http.server
import socket
import threading

import lightning as L
import pytest
import torch

from conftest import idx_bytes, synthetic_digits, write_mnist
from digitnet import mnist
from digitnet.augment import cut_from_neighbours, random_affine, random_shift
from digitnet.data import MNISTDataModule
from digitnet.mnist import read_idx
from digitnet.images import to_input
from digitnet.errors import DigitnetError


def test_reader_round_trips_raw_and_gzip(tmp_path):
    images, labels = synthetic_digits(7, seed=3)
    (tmp_path / "a-idx3-ubyte").write_bytes(idx_bytes(images))
    (tmp_path / "b-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    assert torch.equal(read_idx(tmp_path / "a-idx3-ubyte"), images)
    assert torch.equal(read_idx(tmp_path / "b-idx1-ubyte.gz"), labels.to(torch.uint8))


@pytest.mark.parametrize(
    "mangle, message",
    [
        (lambda raw: b"\x00\x00\x09\x99" + raw[4:], "not an IDX file"),
        (lambda raw: raw[:-5], "truncated"),
        (lambda raw: raw[:10], "truncated"),
        (lambda raw: raw + b"\x00", "trailing bytes"),
        (lambda raw: b"", "no header"),
    ],
)
def test_corrupt_images_file_names_file_and_problem(tmp_path, mangle, message):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(mangle(idx_bytes(synthetic_digits(4, seed=0)[0])))
    with pytest.raises(DigitnetError, match=message) as err:
        read_idx(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_truncated_gzip_is_reported(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(synthetic_digits(4, seed=0)[0]))[:-20])
    with pytest.raises(DigitnetError, match="cannot read"):
        read_idx(path)


def test_labels_in_images_slot_and_count_mismatch(mnist_dir):
    (mnist_dir / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(torch.zeros(39))))
    with pytest.raises(DigitnetError, match="40 images but .* 39 labels"):
        mnist.load_split(mnist_dir, mnist.TEST_FILES)
    (mnist_dir / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(torch.zeros(39))))
    with pytest.raises(DigitnetError, match="holds labels .* expected images"):
        mnist.load_split(mnist_dir, mnist.TEST_FILES)


def test_label_out_of_range(mnist_dir):
    (mnist_dir / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(torch.full((40,), 11))))
    with pytest.raises(DigitnetError, match="label 11 is not a digit"):
        mnist.load_split(mnist_dir, mnist.TEST_FILES)


def test_checksum_mismatch_on_a_full_size_file(tmp_path):
    # 10,000 labels under the canonical name claim to be the original file: the SHA-256 must match.
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(idx_bytes(torch.zeros(10_000)))
    with pytest.raises(DigitnetError, match="SHA-256 differs"):
        read_idx(path)


def test_a_recompressed_copy_of_mnist_passes_the_content_check(real_mnist, tmp_path):
    from torchvision.datasets import MNIST
    from torchvision.datasets.utils import check_integrity

    for name in mnist.TEST_FILES:  # the original bytes, gzipped anew: torchvision's MD5 of its .gz no longer fits
        raw = gzip.decompress(mnist.find_file(real_mnist, name).read_bytes())
        (tmp_path / f"{name}.gz").write_bytes(gzip.compress(raw, compresslevel=1, mtime=0))
        assert not check_integrity(tmp_path / f"{name}.gz", dict(MNIST.resources)[f"{name}.gz"])
    images, labels = mnist.load_split(tmp_path, mnist.TEST_FILES)
    assert images.shape == (10_000, 28, 28) and labels.shape == (10_000,)


def test_torchvision_layout_and_raw_files(tmp_path):
    write_mnist(tmp_path / "MNIST" / "raw", gz=False)
    dm = MNISTDataModule(data_dir=str(tmp_path), val_size=20)
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.train_set) == 100 and len(dm.val_set) == 20


def test_split_sizes_and_seeding(mnist_dir):
    def split(seed):
        dm = MNISTDataModule(data_dir=str(mnist_dir), val_size=30, seed=seed)
        dm.setup("fit")
        return dm

    a, b, c = split(0), split(0), split(1)
    assert len(a.train_set) + len(a.val_set) == 120 and len(a.val_set) == 30
    assert torch.equal(a.val_set.tensors[0], b.val_set.tensors[0])
    assert not torch.equal(a.val_set.tensors[0], c.val_set.tensors[0])
    # the split is a partition: no validation image is also a training image
    train, val = a.train_set.tensors[0].flatten(1), a.val_set.tensors[0].flatten(1)
    assert not (train[:, None, :] == val[None, :, :]).all(-1).any()


def test_batches_dtypes_shapes_and_full_test_set(mnist_dir):
    dm = MNISTDataModule(data_dir=str(mnist_dir), batch_size=16, eval_batch_size=15, val_size=20)
    dm.setup("fit")
    dm.setup("test")
    x, y = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.float32 and x.shape == (16, 1, 28, 28)
    assert y.dtype == torch.int64 and y.shape == (16,)
    assert [len(y) for _, y in dm.test_dataloader()] == [15, 15, 10]  # eval_batch_size, no drop_last
    assert [len(y) for _, y in dm.val_dataloader()] == [15, 5]
    seen = torch.cat([x for x, _ in dm.train_dataloader()])
    assert len(seen) == 100  # every training image once per epoch


def test_normalization(mnist_dir):
    plain = MNISTDataModule(data_dir=str(mnist_dir), normalize=False)
    plain.setup("test")
    x = plain.test_set.tensors[0]
    assert x.min() >= 0 and x.max() == 1.0
    raw = read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")
    assert torch.allclose(x[:, 0], raw.float() / 255)
    norm = MNISTDataModule(data_dir=str(mnist_dir))
    norm.setup("test")
    assert torch.allclose(norm.test_set.tensors[0], (x - 0.1307) / 0.3081, atol=1e-6)


def test_bad_settings_raise():
    with pytest.raises(DigitnetError, match="batch_size"):
        MNISTDataModule(batch_size=0)
    with pytest.raises(DigitnetError, match="eval_batch_size must be at least 1"):
        MNISTDataModule(eval_batch_size=0)
    with pytest.raises(DigitnetError, match="val_size"):
        MNISTDataModule(val_size=0)


def test_val_size_must_leave_training_images(mnist_dir):
    dm = MNISTDataModule(data_dir=str(mnist_dir), val_size=120)
    with pytest.raises(DigitnetError, match="smaller than the 120 images"):
        dm.setup("fit")


def test_data_dir_defaults_to_environment(monkeypatch, mnist_dir):
    monkeypatch.setenv("DIGITNET_DATA_DIR", str(mnist_dir))
    assert MNISTDataModule().data_dir == str(mnist_dir)
    monkeypatch.delenv("DIGITNET_DATA_DIR")
    assert MNISTDataModule().data_dir == "data"


def test_missing_data_message(tmp_path):
    dm = MNISTDataModule(data_dir=str(tmp_path / "empty"), mirrors=["http://127.0.0.1:9/"])
    with pytest.raises(DigitnetError) as err:
        dm.prepare_data()
    message = str(err.value)
    for expected in ["empty", *mnist.FILES, "http://127.0.0.1:9/train-images-idx3-ubyte.gz", "--data.data_dir", "DIGITNET_DATA_DIR"]:
        assert expected in message
    assert not (tmp_path / "empty").exists()  # nothing written


def test_the_missing_file_is_named(mnist_dir):
    (mnist_dir / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DigitnetError, match=r"\(nor in its MNIST/raw/\): t10k-labels-idx1-ubyte missing of "):
        MNISTDataModule(data_dir=str(mnist_dir), download=False).prepare_data()


def test_fit_stops_at_a_bad_test_file_before_training(mnist_dir, tmp_path, capsys):
    # The test set was read only after training, when `fit` tests: a convnet's run spent, then "cannot read".
    from digitnet.cli import main

    path = mnist_dir / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(SystemExit) as exit_:
        main(["fit", f"--data.data_dir={mnist_dir}", "--data.val_size=20", f"--trainer.default_root_dir={tmp_path}"])
    assert exit_.value.code == 2 and "t10k-images-idx3-ubyte.gz: cannot read" in capsys.readouterr().err
    assert not (tmp_path / "lightning_logs").exists()


@pytest.fixture
def mirrors(tmp_path, monkeypatch):
    """Two local HTTP mirrors: the first serves corrupt bytes for every file, the second good ones."""
    good = write_mnist(tmp_path / "good")
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in mnist.FILES:
        raw = gzip.decompress((good / f"{name}.gz").read_bytes())
        monkeypatch.setitem(mnist.SHA256, name, hashlib.sha256(raw).hexdigest())
        (bad / f"{name}.gz").write_bytes(gzip.compress(raw[:-1] + b"\x01"))
    servers = []
    for folder in (bad, good):
        handler = functools.partial(QuietHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    yield [f"http://127.0.0.1:{s.server_address[1]}/" for s in servers]
    for server in servers:
        server.shutdown()


def test_a_data_dir_that_is_a_file_is_one_line_when_a_mirror_answers(tmp_path, mirrors):
    (tmp_path / "afile").write_text("not a folder")
    with pytest.raises(DigitnetError, match="MNIST's folder .*afile: a file, not a folder"):
        MNISTDataModule(data_dir=str(tmp_path / "afile"), mirrors=mirrors).prepare_data()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_download_skips_corrupt_mirror(tmp_path, mirrors):
    target = tmp_path / "downloaded"
    dm = MNISTDataModule(data_dir=str(target), mirrors=mirrors, val_size=20)
    dm.prepare_data()
    assert sorted(p.name for p in target.iterdir()) == sorted(f"{n}.gz" for n in mnist.FILES)  # no .part left
    dm.setup("fit")
    assert len(dm.train_set) == 100


def test_a_mirror_that_never_answers_times_out(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as silent:  # connections wait in its backlog, never answered
        with pytest.raises(DigitnetError, match="timed out"):
            mnist.download(tmp_path / "data", [f"http://127.0.0.1:{silent.getsockname()[1]}/"], timeout=0.5)
    assert not (tmp_path / "data").exists()


def test_download_fails_when_every_mirror_is_bad(tmp_path, mirrors):
    target = tmp_path / "downloaded"
    with pytest.raises(DigitnetError, match="bad SHA-256"):
        mnist.download(target, mirrors[:1])
    assert not target.exists() or not any(target.iterdir())



def translated(images: torch.Tensor, dx: int, dy: int, fill: float) -> torch.Tensor:
    """The reference, by slicing: (..., H, W) images moved right by dx and down by dy, `fill` where uncovered."""
    h, w = images.shape[-2:]
    out = torch.full_like(images, fill)
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = images[
        ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def all_translations(images: torch.Tensor, shift: int, fill: float) -> dict[tuple[int, int], torch.Tensor]:
    offsets = [(dx, dy) for dx in range(-shift, shift + 1) for dy in range(-shift, shift + 1)]
    return {offset: translated(images, *offset, fill) for offset in offsets}


def test_random_shift_moves_a_single_bright_pixel_by_at_most_shift():
    # Black images with one bright pixel at row 14, column 10: each must have it at (14 + dy, 10 + dx).
    images = torch.zeros(300, 1, 28, 28)
    images[:, 0, 14, 10] = 1.0
    torch.manual_seed(0)
    out = random_shift(images, 3, fill=0.0)
    assert out.shape == images.shape and out.dtype == images.dtype
    assert torch.equal(out.flatten(1).sum(1), torch.ones(300))  # moved, neither lost nor copied
    where = out.flatten(1).argmax(1)
    dy, dx = where // 28 - 14, where % 28 - 10
    assert dx.abs().max() == 3 and dy.abs().max() == 3
    assert len(set(zip(dx.tolist(), dy.tolist()))) == 49  # every (dx, dy) in [-3, 3]^2 occurs: each image its own
    torch.manual_seed(0)
    assert torch.equal(random_shift(images, 3, fill=0.0), out)  # same seed, same shifts


def test_random_shift_is_a_translation_with_the_fill_where_uncovered():
    images = synthetic_digits(40, seed=4)[0][:, None].float()  # (40, 1, 28, 28): noise and a bar
    torch.manual_seed(1)
    out = random_shift(images, 2, fill=-7.0)
    candidates = all_translations(images, 2, fill=-7.0)  # (dx, dy) -> (40, 1, 28, 28)
    offsets = []
    for i, image in enumerate(out):
        offsets += [offset for offset, moved in candidates.items() if torch.equal(image, moved[i])][:1]
    assert len(offsets) == 40  # every image is its own original translated by |dx|, |dy| <= 2
    assert len(set(offsets)) > 10
    assert torch.equal(random_shift(images, 0, fill=-7.0), images)


class Recorder(L.LightningModule):
    """Keeps the batches its steps receive; learns nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen = {"train": [], "val": [], "test": []}

    def training_step(self, batch, batch_idx):
        self.seen["train"].append(batch)
        return self.weight.sum() * batch[0].mean()

    def validation_step(self, batch, batch_idx):
        self.seen["val"].append(batch)

    def test_step(self, batch, batch_idx):
        self.seen["test"].append(batch)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def fit_and_test(mnist_dir, **kwargs) -> tuple[MNISTDataModule, Recorder]:
    """One epoch of `fit` (after a one-batch sanity check) and a `test`, recording every batch."""
    dm = MNISTDataModule(data_dir=str(mnist_dir), batch_size=16, eval_batch_size=16, val_size=20, **kwargs)
    model = Recorder()
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=1)
    trainer.fit(model, datamodule=dm)
    trainer.test(model, datamodule=dm, verbose=False)
    return dm, model


@pytest.mark.parametrize("normalize", [True, False])
def test_training_batches_are_shifted_and_the_others_are_not(mnist_dir, normalize):
    L.seed_everything(0)
    dm, model = fit_and_test(mnist_dir, shift=2, normalize=normalize)
    assert dm.background == pytest.approx((0 - 0.1307) / 0.3081 if normalize else 0.0)
    assert dm.background == to_input(torch.zeros(28, 28, dtype=torch.uint8), normalize)[0, 0, 0, 0].item()  # a 0 pixel, exactly
    for x, y in model.seen["train"]:
        assert x.dtype == torch.float32 and x.shape[1:] == (1, 28, 28) and y.dtype == torch.int64 and len(x) == len(y)
    x, y = (torch.cat(t) for t in zip(*model.seen["train"]))
    assert len(x) == 100  # every training image once
    # Each training image is a stored training image of the same label moved by |dx|, |dy| <= 2,
    # the uncovered border filled with the background; some moved.
    candidates = all_translations(dm.train_set.tensors[0], 2, dm.background)  # (dx, dy) -> (100, 1, 28, 28)
    moved = 0
    for image, label in zip(x, y):
        same_label = dm.train_set.tensors[1] == label
        offsets = [o for o, c in candidates.items() if (c[same_label] == image).flatten(1).all(1).any()]
        assert offsets, "a training image is not a stored one moved by at most 2 pixels"
        moved += (0, 0) not in offsets
    assert moved > 50  # 24 of the 25 offsets move the image
    # Validation (the sanity check's batch first) and test batches are the stored tensors, as they are.
    val = model.seen["val"]
    assert torch.equal(val[0][0], dm.val_set.tensors[0][:16])
    assert torch.equal(torch.cat([x for x, _ in val[1:]]), dm.val_set.tensors[0])
    assert torch.equal(torch.cat([x for x, _ in model.seen["test"]]), dm.test_set.tensors[0])


def test_shift_zero_passes_the_batch_through(mnist_dir):
    dm = MNISTDataModule(data_dir=str(mnist_dir), batch_size=16, val_size=20)  # shift=0, the default
    dm.trainer = L.Trainer(logger=False, accelerator="cpu")
    dm.trainer.training = True
    batch = (torch.randn(16, 1, 28, 28), torch.zeros(16, dtype=torch.long))
    assert dm.on_after_batch_transfer(batch, 0) is batch  # the same objects: nothing computed
    L.seed_everything(0)
    dm, model = fit_and_test(mnist_dir)
    x = torch.cat([x for x, _ in model.seen["train"]])
    stored = dm.train_set.tensors[0].flatten(1)
    assert (x.flatten(1)[:, None, :] == stored[None]).all(-1).any(1).all()  # each one a stored image, unchanged


def test_shifts_are_reproducible_with_seed_everything(mnist_dir):
    runs = []
    for _ in range(2):
        L.seed_everything(3)
        runs.append(torch.cat([x for x, _ in fit_and_test(mnist_dir, shift=1)[1].seen["train"]]))
    assert torch.equal(*runs)


@pytest.mark.parametrize("shift", [-1, 28, 100])
def test_bad_shift_raises(shift):
    with pytest.raises(DigitnetError, match=r"shift must be between 0 \(off\) and 27 pixels, got") as err:
        MNISTDataModule(shift=shift)
    assert "\n" not in str(err.value)


def dot_images(n: int, row: int, col: int) -> torch.Tensor:
    """(n, 1, 28, 28) zeros with one bright 2x2 dot whose centre lies at (row + 0.5, col + 0.5)."""
    images = torch.zeros(n, 1, 28, 28)
    images[:, :, row : row + 2, col : col + 2] = 1.0
    return images


def dot_centre(images: torch.Tensor) -> torch.Tensor:
    """(N, 2) centre of mass (row, col) of each image, measured from the image centre (14, 14)."""
    mass = images[:, 0].clamp(min=0)
    grid = torch.arange(28.0) + 0.5 - 14  # pixel centres
    total = mass.sum((1, 2))
    return torch.stack([(mass.sum(2) * grid).sum(1) / total, (mass.sum(1) * grid).sum(1) / total], 1)


def test_random_affine_with_nothing_drawn_is_the_identity():
    images = torch.rand(4, 1, 28, 28)
    assert torch.allclose(random_affine(images, fill=-0.4), images, atol=1e-5)


def test_random_affine_rotates_each_image_by_its_own_angle_within_bounds():
    torch.manual_seed(0)
    images = dot_images(64, 3, 13)  # a dot 10 pixels above the centre
    before = dot_centre(images)[0]
    after = dot_centre(random_affine(images, degrees=30))
    radius = after.norm(dim=1)
    assert torch.allclose(radius, before.norm().expand(64), atol=0.3)  # a rotation keeps the distance
    angle = torch.rad2deg(torch.atan2(after[:, 1], -after[:, 0]))  # 0 straight above the centre
    assert angle.abs().max() <= 30.5 and angle.abs().max() > 20 and angle.std() > 10  # each its own angle


def test_random_affine_scales_and_shifts_within_bounds():
    torch.manual_seed(0)
    images = dot_images(64, 3, 13)
    distance = dot_centre(images)[0].norm()
    scaled = dot_centre(random_affine(images, scale=0.2)).norm(dim=1) / distance
    assert scaled.min() >= 0.78 and scaled.max() <= 1.22 and scaled.max() - scaled.min() > 0.2
    centre = dot_images(64, 13, 13)  # a dot at the centre, moved by at most 3 pixels in x and y
    moved = dot_centre(random_affine(centre, shift=3))
    assert moved.abs().max() <= 3.05 and moved.abs().max() > 2 and moved.std(0).min() > 1


def ink_width(ink: torch.Tensor) -> torch.Tensor:
    """(N, H, W) -> (N,): the columns that hold ink."""
    return (ink > 0.1).any(1).sum(1)


def test_cut_from_neighbours_keeps_each_digit_s_own_side_with_at_most_a_bit_of_its_neighbour():
    torch.manual_seed(0)
    bar, ring = torch.zeros(28, 28), torch.zeros(28, 28)
    bar[4:24, 12:16] = 1  # a 1: narrow
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    ring[((ys - 14) ** 2 + (xs - 14) ** 2).sqrt().sub(9).abs() < 2] = 1  # a 0: as wide as high
    digits = torch.stack([bar, ring] * 32)  # each one's neighbour is the other kind
    out = cut_from_neighbours(digits, share=1.0)
    assert out.shape == digits.shape and out.min() >= 0 and out.max() <= 1
    width = ink_width(out)
    # The bar (4 columns) keeps its side, 20 pixels high, less at most the 3 columns the ring overlapped, one more
    # column where resampling spreads it: the wrong side (the ring) or no cut (bar and ring) would be 14 or more.
    assert width[0::2].max() <= 5 and width[0::2].min() >= 1 and (width[0::2] < 4).any()
    assert width[1::2].min() >= 14
    assert torch.equal(cut_from_neighbours(digits, share=0.0), digits)  # share 0: every digit as it was
    ones = torch.zeros(64, 28, 28)  # 1s three columns wide, far apart in their pictures: drawn touching, cut apart
    ones[0::2, 4:24, 5:8], ones[1::2, 4:24, 20:23] = 1, 1
    assert ink_width(cut_from_neighbours(ones, share=1.0)).min() >= 2  # each keeps at least half its columns
    with pytest.raises(DigitnetError, match=r"--data.neighbours must be between 0 and 1, got 1.5"):
        MNISTDataModule(neighbours=1.5)


def test_random_affine_fills_what_it_brings_in_and_is_reproducible():
    images = torch.ones(8, 1, 28, 28)
    torch.manual_seed(1)
    out = random_affine(images, degrees=45, fill=-7.0)
    assert out.min() == pytest.approx(-7.0, abs=1e-4)  # corners rotated in from outside: the fill
    assert out.max() == pytest.approx(1.0, abs=1e-4) and out.shape == images.shape
    torch.manual_seed(1)
    assert torch.equal(random_affine(images, degrees=45, fill=-7.0), out)


def test_training_batches_get_the_affine_transform_and_the_others_do_not(mnist_dir):
    L.seed_everything(0)
    dm, model = fit_and_test(mnist_dir, rotate=15, scale=0.1, shift=1)
    x = torch.cat([x for x, _ in model.seen["train"]])
    stored = dm.train_set.tensors[0].flatten(1)
    unchanged = (x.flatten(1)[:, None, :] == stored[None]).all(-1).any(1)
    assert not unchanged.any()  # every training image was resampled
    assert x.min() >= dm.background - 1e-4  # no darker-than-background pixels: the fill is the background
    val = model.seen["val"]
    assert torch.equal(torch.cat([x for x, _ in val[1:]]), dm.val_set.tensors[0])
    assert torch.equal(torch.cat([x for x, _ in model.seen["test"]]), dm.test_set.tensors[0])


@pytest.mark.parametrize("setting", [{"rotate": -1}, {"rotate": 180}, {"scale": 1.0}, {"shear": -5}])
def test_bad_affine_settings_raise(setting):
    (name, value), = setting.items()
    with pytest.raises(DigitnetError, match=rf"--data.{name} must be at least 0 \(off\) and below \d+, got {value}"):
        MNISTDataModule(**setting)
