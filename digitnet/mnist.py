"""The MNIST files: finding, reading and downloading them, with an error naming the file and what to do.

Read where they lie, gzipped or not: a shared data folder may be read-only, and torchvision's readers take only
decompressed files (tests/test_data.py::test_reader_round_trips_raw_and_gzip)."""

from __future__ import annotations

import gzip
import hashlib
import os
import urllib.request
from pathlib import Path

import torch

from digitnet.errors import DigitnetError
from digitnet.files import atomic_write, check_folder

TRAIN_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
TEST_FILES = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
FILES = TRAIN_FILES + TEST_FILES
# SHA-256 of the *decompressed* original files: torchvision's MD5s of its .gz files reject a recompressed copy
# of the same bytes (tests/test_data.py::test_a_recompressed_copy_of_mnist_passes_the_content_check).
SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
COUNTS = {name: 60_000 if name.startswith("train") else 10_000 for name in FILES}
KINDS = {0x00000801: (1, "labels"), 0x00000803: (3, "images")}  # IDX magic number of unsigned bytes -> dims, what


def default_data_dir() -> str:
    return os.environ.get("DIGITNET_DATA_DIR") or "data"


def find_file(data_dir: str | Path, name: str) -> Path | None:
    """Where `name` (raw or .gz) lies in `data_dir` or its torchvision layout `MNIST/raw/`."""
    for folder in (Path(data_dir), Path(data_dir) / "MNIST" / "raw"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def read_idx(path: str | Path, expect_ndim: int | None = None) -> torch.Tensor:
    """An IDX file, gzipped or not (a big-endian header: magic number, sizes; then the uint8 data), as a uint8 tensor;
    one named and sized as an original MNIST file must match its SHA-256."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (EOFError, gzip.BadGzipFile, OSError) as err:
        raise DigitnetError(f"{path}: cannot read ({err}); delete it to download it again") from None
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if magic not in KINDS:
        found = "no header" if magic is None else f"magic 0x{magic:08x}"
        raise DigitnetError(f"{path}: not an IDX file of unsigned bytes ({found}, expected 0x00000801 or 0x00000803)")
    ndim, kind = KINDS[magic]
    if expect_ndim is not None and ndim != expect_ndim:
        expected = next(f"{what} (magic 0x{m:08x})" for m, (n, what) in KINDS.items() if n == expect_ndim)
        raise DigitnetError(f"{path}: holds {kind} (magic 0x{magic:08x}), expected {expected}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DigitnetError(f"{path}: truncated header ({len(raw)} bytes)")
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + torch.Size(shape).numel()
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "has trailing bytes"
        raise DigitnetError(f"{path}: {what}: {len(raw)} bytes, the header {shape} needs {expected}")
    name = path.name.removesuffix(".gz")
    if name in SHA256 and shape[0] == COUNTS[name] and hashlib.sha256(raw).hexdigest() != SHA256[name]:
        raise DigitnetError(f"{path}: SHA-256 differs from the original MNIST file; delete it to download it again")
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8, offset=header).view(shape)


def load_split(data_dir: str | Path, files: tuple[str, str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 28, 28) uint8 images and (N,) int64 labels from one images/labels pair of files."""
    paths = [find_file(data_dir, name) for name in files]
    if None in paths:
        raise DigitnetError(f"{data_dir}: missing {', '.join(n for n, p in zip(files, paths) if p is None)}")
    images, labels = read_idx(paths[0], expect_ndim=3), read_idx(paths[1], expect_ndim=1)
    if len(images) != len(labels):
        raise DigitnetError(f"{paths[0]} holds {len(images)} images but {paths[1]} holds {len(labels)} labels")
    if len(labels) and int(labels.max()) > 9:
        raise DigitnetError(f"{paths[1]}: label {int(labels.max())} is not a digit 0-9")
    return images, labels.long()


def download(data_dir: str | Path, mirrors: list[str] | None = None, timeout: float = 30.0) -> None:
    """Fetch the missing MNIST files into `data_dir`, from each mirror in turn (default: torchvision's list), each
    kept only if its decompressed SHA-256 matches, and written whole or not at all. A silent mirror times out, where
    torchvision's `download_url` waits forever (tests/test_data.py::test_a_mirror_that_never_answers_times_out)."""
    for name in [name for name in FILES if find_file(data_dir, name) is None]:
        if mirrors is None:  # here, once a file is missing: torchvision is slow to import
            from torchvision.datasets import MNIST

            mirrors = MNIST.mirrors
        failures = []
        for mirror in mirrors:
            url = f"{mirror.rstrip('/')}/{name}.gz"
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    payload = response.read()
                if hashlib.sha256(gzip.decompress(payload)).hexdigest() != SHA256[name]:
                    raise ValueError("bad SHA-256")
            except (OSError, EOFError, ValueError) as err:  # URLError, timeouts, bad gzip are OSErrors
                failures.append(f"{url} ({getattr(err, 'reason', err)})")
                continue
            check_folder("MNIST's folder", data_dir, "MNIST")  # a file: atomic_write's FileExistsError
            atomic_write(Path(data_dir) / f"{name}.gz", payload)
            break
        else:
            tried = f"Downloading failed: {'; '.join(failures)}.\n" if failures else ""
            missing = [name for name in FILES if find_file(data_dir, name) is None]
            some = f"{', '.join(missing)} missing of " if len(missing) < len(FILES) else ""
            raise DigitnetError(f"MNIST was not found in {Path(data_dir).resolve()} (nor in its MNIST/raw/): "
                                f"{some or 'expected '}{', '.join(FILES)}, gzipped (.gz) or not.\n"
                                f"{tried}Put the four files in "
                                "a folder and pass --data.data_dir DIR, or set DIGITNET_DATA_DIR=DIR.")
