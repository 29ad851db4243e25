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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sepconv_contract import CLASS_NAMES, INPUT_SHAPE

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
PYTHON_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
CACHE_FORMAT_VERSION = 1

Images = npt.NDArray[np.uint8]
Labels = npt.NDArray[np.int64]


class DatasetError(ValueError):
    """The data source is missing or not in a layout this module can read."""


SplitLoader = Callable[[], tuple[Images, Labels]]


class Cifar10:
    """The CIFAR-10 training split, and the test split behind a loader that counts its reads.

    The test split is for the final estimate only: nothing in training touches it, and it is
    read (decoded, for image folders) the first time ``test_images`` or ``test_labels`` is asked
    for. ``test_reads`` says whether that happened, so a test can prove when it did.
    """

    def __init__(
        self,
        train_images: Images,
        train_labels: Labels,
        test: SplitLoader | tuple[Images, Labels],
        source: str,
    ) -> None:
        self.train_images = train_images
        self.train_labels = train_labels
        self.source = source
        self._test_loader: SplitLoader = test if callable(test) else (lambda: test)
        self._test: tuple[Images, Labels] | None = None
        self.test_reads = 0

    def _test_split(self) -> tuple[Images, Labels]:
        if self._test is None:
            self.test_reads += 1
            self._test = self._test_loader()
        return self._test

    @property
    def test_images(self) -> Images:
        """The test images: read on first use, for the final evaluation only."""
        return self._test_split()[0]

    @property
    def test_labels(self) -> Labels:
        """The test labels: read on first use, for the final evaluation only."""
        return self._test_split()[1]

    @functools.cached_property
    def fingerprint(self) -> str:
        """A digest of every training image and label: it keys checkpoints by content.

        So two folders of the same name never resume each other's runs, and a run trained on
        another machine (where the data lives elsewhere) is found here. The test split is not
        part of it: training must not read it. About 0.2 s, so it is computed once per data set.
        """
        return array_digest(self.train_images, self.train_labels)

    def limited(self, limit: int, seed: int = 0) -> Cifar10:
        """A random (seeded) subset of at most ``limit`` images of each split."""
        rng = np.random.default_rng(seed)
        train = rng.permutation(len(self.train_labels))[:limit]
        # Drawn now so the subset is the same whenever the test split is read, but applied
        # only then: limiting must not read the test split either.
        test_rng = np.random.default_rng(rng.integers(2**32))

        def limited_test() -> tuple[Images, Labels]:
            images, labels = self._test_split()
            chosen = test_rng.permutation(len(labels))[:limit]
            return images[chosen], labels[chosen]

        return Cifar10(
            self.train_images[train],
            self.train_labels[train],
            limited_test,
            f"{self.source} (limit {limit})",
        )


def array_digest(*arrays: npt.NDArray[np.generic]) -> str:
    """A SHA-256 over the shapes and bytes of ``arrays``: the identity of a set of images."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


@dataclass(frozen=True)
class ValidationSplit:
    """The training images split into what the network fits and what selects among epochs."""

    train_images: Images
    train_labels: Labels
    validation_images: Images
    validation_labels: Labels
    per_class: int
    seed: int

    @functools.cached_property
    def digest(self) -> str:
        """The content digest of the validation images and labels, recorded in the metadata."""
        return array_digest(self.validation_images, self.validation_labels)

    def describe(self) -> dict[str, object]:
        """What ``metadata.json`` records about the split."""
        return {
            "split": "train",
            "images": int(len(self.validation_labels)),
            "per_class": self.per_class,
            "seed": self.seed,
            "sha256": self.digest,
        }


DEFAULT_VALIDATION_PER_CLASS = 500


def validation_per_class(labels: Labels, requested: int | None) -> int:
    """Images per class to hold out: ``requested``, else 500 (10% of CIFAR-10's 5,000 a class).

    On a smaller data set (``--limit``, test fixtures) the default shrinks to 10% of the
    smallest class, at least one image; an explicit request that leaves a class without
    training images is refused.
    """
    counts = np.bincount(labels, minlength=len(CLASS_NAMES))
    smallest = int(counts.min())
    if requested is None:
        return max(1, min(DEFAULT_VALIDATION_PER_CLASS, smallest // 10))
    if requested < 1 or requested >= smallest:
        rarest = CLASS_NAMES[int(counts.argmin())]
        raise DatasetError(
            f"a validation split of {requested} images per class needs more than that in every "
            f"class, but {rarest} has {smallest} training images: choose "
            f"--validation-per-class between 1 and {smallest - 1}"
        )
    return requested


def split_validation(
    images: Images, labels: Labels, per_class: int | None = None, seed: int = 0
) -> ValidationSplit:
    """Hold out ``per_class`` images of each class, chosen by ``seed`` (stratified)."""
    count = validation_per_class(labels, per_class)
    rng = np.random.default_rng(seed)
    held_out = np.concatenate(
        [
            rng.permutation(np.flatnonzero(labels == label))[:count]
            for label in range(len(CLASS_NAMES))
        ]
    )
    held_out.sort()
    keep = np.ones(len(labels), dtype=bool)
    keep[held_out] = False
    return ValidationSplit(
        images[keep], labels[keep], images[held_out], labels[held_out], count, seed
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
    # Keras downloads both splits in one archive; the test split is still handed out only
    # on first use, like every other source's.
    test = (test_images.astype(np.uint8), test_labels.reshape(-1).astype(np.int64))
    return Cifar10(
        train_images.astype(np.uint8),
        train_labels.reshape(-1).astype(np.int64),
        test,
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
    return Cifar10(train_images, train_labels, lambda: read(PYTHON_BATCHES[5:]), "python batches")


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
    # The test folder's layout is checked now (a missing class fails at once), its images are
    # decoded only when the final evaluation reads them.
    _list_split(root, "test")
    return Cifar10(
        train_images,
        train_labels,
        lambda: _load_split(root, "test", cache_dir, progress),
        f"image folders {root.name}",
    )
