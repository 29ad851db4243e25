"""CIFAR-10 as uint8 arrays, from Keras' downloader, an image-folder tree or the python batches.

Every source yields images ``(N, 32, 32, 3)`` uint8 and integer labels in the standard class
order. Decoding 60,000 JPEGs takes a while, so decoded folders are cached as ``.npz`` files keyed
by a fingerprint of the file list; a changed tree is decoded again rather than served stale.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from training.architectures import CLASS_NAMES, INPUT_SHAPE

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
PYTHON_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
CACHE_FORMAT_VERSION = 1

Images = npt.NDArray[np.uint8]
Labels = npt.NDArray[np.int64]


class DatasetError(ValueError):
    """The data source is missing or not in a layout this module can read."""


@dataclass(frozen=True)
class Cifar10:
    """The CIFAR-10 train and test splits, with where they came from."""

    train_images: Images
    train_labels: Labels
    test_images: Images
    test_labels: Labels
    source: str

    @functools.cached_property
    def fingerprint(self) -> str:
        """A digest of every image and label: it keys checkpoints by content, not by path.

        So two folders of the same name never resume each other's runs, and a run trained on
        another machine (where the data lives elsewhere) is found here. About 0.2 s, so it is
        computed once per data set, not once per model trained on it.
        """
        digest = hashlib.sha256()
        for array in (self.train_images, self.train_labels, self.test_images, self.test_labels):
            digest.update(str(array.shape).encode())
            digest.update(np.ascontiguousarray(array).data)
        return digest.hexdigest()

    def limited(self, limit: int, seed: int = 0) -> Cifar10:
        """A random (seeded) subset of at most ``limit`` images of each split."""
        rng = np.random.default_rng(seed)
        train = rng.permutation(len(self.train_labels))[:limit]
        test = rng.permutation(len(self.test_labels))[:limit]
        return Cifar10(
            self.train_images[train],
            self.train_labels[train],
            self.test_images[test],
            self.test_labels[test],
            f"{self.source} (limit {limit})",
        )


def default_cache_dir() -> Path:
    """Where decoded arrays are cached: ``$SEPCONV_CACHE_DIR`` or ``~/.cache/sepconv-serve``."""
    return Path(os.environ.get("SEPCONV_CACHE_DIR", Path.home() / ".cache" / "sepconv-serve"))


def load_cifar10(source: str, cache_dir: Path | None = None, progress: bool = True) -> Cifar10:
    """Load CIFAR-10 from ``"keras"`` (downloads when online) or a local directory.

    A directory may hold the image-folder layout (``train/<class>/*``, ``test/<class>/*``) or
    the official python batches (``data_batch_1..5``, ``test_batch``).
    """
    if source == "keras":
        return _load_keras()
    root = Path(source).expanduser()
    if not root.is_dir():
        raise DatasetError(
            f"data directory {root} does not exist: expected 'keras' or a directory holding "
            "train/<class>/ and test/<class>/ image folders, or the python batches"
        )
    if all((root / name).is_file() for name in PYTHON_BATCHES):
        return _load_python_batches(root)
    if (root / "cifar-10-batches-py").is_dir():
        return _load_python_batches(root / "cifar-10-batches-py")
    if (root / "train").is_dir() and (root / "test").is_dir():
        return _load_image_folders(root, cache_dir or default_cache_dir(), progress)
    found = ", ".join(sorted(p.name for p in root.iterdir())[:10]) or "nothing"
    raise DatasetError(
        f"{root} is not a CIFAR-10 directory: expected train/ and test/ folders of class "
        f"sub-folders, or the files {', '.join(PYTHON_BATCHES)}; found {found}"
    )


def _load_keras() -> Cifar10:
    import keras

    (train_images, train_labels), (test_images, test_labels) = keras.datasets.cifar10.load_data()
    return Cifar10(
        train_images.astype(np.uint8),
        train_labels.reshape(-1).astype(np.int64),
        test_images.astype(np.uint8),
        test_labels.reshape(-1).astype(np.int64),
        "keras.datasets.cifar10",
    )


def _load_python_batches(root: Path) -> Cifar10:
    def read(names: tuple[str, ...]) -> tuple[Images, Labels]:
        images, labels = [], []
        for name in names:
            path = root / name
            try:
                with path.open("rb") as handle:
                    batch = pickle.load(handle, encoding="bytes")  # noqa: S301 - trusted local data
                data = np.asarray(batch[b"data"], dtype=np.uint8)
                batch_labels = np.asarray(batch[b"labels"], dtype=np.int64)
            except (OSError, pickle.UnpicklingError, KeyError, EOFError, TypeError) as error:
                raise DatasetError(
                    f"cannot read CIFAR-10 batch {path}: {error.__class__.__name__}; expected a "
                    "pickled dict with b'data' (N x 3072 uint8) and b'labels'"
                ) from error
            if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(batch_labels):
                raise DatasetError(
                    f"CIFAR-10 batch {path} has data of shape {data.shape} and "
                    f"{len(batch_labels)} labels: expected (N, 3072) and N labels"
                )
            # The batches store each image as three 1024-byte colour planes (CHW).
            images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            labels.append(batch_labels)
        all_labels = np.concatenate(labels)
        if all_labels.size and (all_labels.min() < 0 or all_labels.max() >= len(CLASS_NAMES)):
            raise DatasetError(f"labels in {root} are outside 0..{len(CLASS_NAMES) - 1}")
        return np.ascontiguousarray(np.concatenate(images)), all_labels

    train_images, train_labels = read(PYTHON_BATCHES[:5])
    test_images, test_labels = read(PYTHON_BATCHES[5:])
    return Cifar10(
        train_images,
        train_labels,
        test_images,
        test_labels,
        "python batches",
    )


def _list_split(root: Path, split: str) -> list[tuple[Path, int]]:
    split_dir = root / split
    class_dirs = sorted(p for p in split_dir.iterdir() if p.is_dir())
    unknown = [p.name for p in class_dirs if p.name not in CLASS_NAMES]
    if unknown:
        raise DatasetError(
            f"{split_dir} has unknown class folder(s) {', '.join(unknown)}: expected only "
            f"{', '.join(CLASS_NAMES)}"
        )
    missing = [name for name in CLASS_NAMES if not (split_dir / name).is_dir()]
    if missing:
        raise DatasetError(f"{split_dir} lacks class folder(s) {', '.join(missing)}")
    files: list[tuple[Path, int]] = []
    for label, name in enumerate(CLASS_NAMES):
        images = sorted(
            p for p in (split_dir / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not images:
            raise DatasetError(
                f"{split_dir / name} holds no images: expected .jpg, .jpeg or .png files"
            )
        files.extend((path, label) for path in images)
    return files


def _fingerprint(files: list[tuple[Path, int]]) -> str:
    digest = hashlib.sha256(f"v{CACHE_FORMAT_VERSION}".encode())
    for path, label in files:
        stat = path.stat()
        digest.update(f"{path.resolve()}|{label}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def _decode_images(files: list[tuple[Path, int]], split: str, progress: bool) -> Images:
    from PIL import Image, UnidentifiedImageError

    images = np.empty((len(files), *INPUT_SHAPE), dtype=np.uint8)
    bar = None
    if progress:
        import keras

        print(f"Decoding {len(files)} {split} images (cached after the first load)")
        bar = keras.utils.Progbar(len(files), unit_name="image")
    for index, (path, _) in enumerate(files):
        try:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"))
        except (OSError, UnidentifiedImageError) as error:
            raise DatasetError(f"cannot read image {path}: {error}") from error
        if pixels.shape != INPUT_SHAPE:
            raise DatasetError(
                f"image {path} is {pixels.shape[1]}x{pixels.shape[0]}: CIFAR-10 images are 32x32"
            )
        images[index] = pixels
        if bar is not None and (index + 1) % 1000 == 0:
            bar.update(index + 1)
    if bar is not None:
        bar.update(len(files), finalize=True)
    return images


def _load_split(root: Path, split: str, cache_dir: Path, progress: bool) -> tuple[Images, Labels]:
    files = _list_split(root, split)
    labels = np.array([label for _, label in files], dtype=np.int64)
    cache_path = cache_dir / f"cifar10-{split}-{_fingerprint(files)}.npz"
    if cache_path.is_file():
        try:
            with np.load(cache_path) as cached:
                return cached["images"], cached["labels"]
        except Exception:  # noqa: BLE001 - a damaged cache (BadZipFile, EOFError...) is rebuilt
            pass
    images = _decode_images(files, split, progress)
    _write_cache(cache_path, images, labels)
    return images, labels


def _write_cache(cache_path: Path, images: Images, labels: Labels) -> None:
    """Write the arrays under a unique temporary name, then rename: concurrent runs never mix."""
    try:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(dir=cache_path.parent, suffix=".partial.npz")
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, images=images, labels=labels)
        Path(partial).replace(cache_path)
    except OSError:
        pass  # Caching is an optimisation; a read-only cache folder must not stop training.


def _load_image_folders(root: Path, cache_dir: Path, progress: bool) -> Cifar10:
    train_images, train_labels = _load_split(root, "train", cache_dir, progress)
    test_images, test_labels = _load_split(root, "test", cache_dir, progress)
    return Cifar10(
        train_images,
        train_labels,
        test_images,
        test_labels,
        f"image folders {root.name}",
    )
