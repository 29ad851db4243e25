from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from training.data import DatasetError, load_cifar10


def test_load_cifar10_image_folders(image_folder_dataset: Path, tmp_path: Path) -> None:
    data = load_cifar10(str(image_folder_dataset), cache_dir=tmp_path / "cache", progress=False)
    assert data.train_images.shape == (30, 32, 32, 3) and data.train_images.dtype == np.uint8
    assert data.test_images.shape == (20, 32, 32, 3)
    assert sorted(set(data.train_labels.tolist())) == list(range(10))
    # Labels follow the standard order: folder "truck" is class 9.
    assert data.train_labels[-1] == 9


def test_load_cifar10_image_folders_caches_decoded_arrays(
    image_folder_dataset: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    first = load_cifar10(str(image_folder_dataset), cache_dir=cache, progress=False)
    # The test split is decoded (and cached) only when it is first read.
    assert [p.name.split("-")[1] for p in cache.glob("cifar10-*.npz")] == ["train"]
    assert first.test_reads == 0 and len(first.test_labels) == 20 and first.test_reads == 1
    assert len(list(cache.glob("cifar10-*.npz"))) == 2
    started = time.perf_counter()
    second = load_cifar10(str(image_folder_dataset), cache_dir=cache, progress=False)
    assert time.perf_counter() - started < 5
    np.testing.assert_array_equal(first.train_images, second.train_images)


def test_load_cifar10_changed_tree_is_decoded_again(
    image_folder_dataset: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    load_cifar10(str(image_folder_dataset), cache_dir=cache, progress=False)
    extra = image_folder_dataset / "train" / "cat" / "9999.png"
    extra.write_bytes((image_folder_dataset / "train" / "cat" / "0001.png").read_bytes())
    data = load_cifar10(str(image_folder_dataset), cache_dir=cache, progress=False)
    assert len(data.train_labels) == 31


def test_load_cifar10_python_batches(python_batches_dataset: Path) -> None:
    data = load_cifar10(str(python_batches_dataset))
    assert data.train_images.shape == (20, 32, 32, 3)
    assert data.test_images.shape == (4, 32, 32, 3)
    # Planes are CHW in the files: the red plane becomes channel 0.
    import pickle

    with (python_batches_dataset / "data_batch_1").open("rb") as handle:
        raw = pickle.load(handle)
    np.testing.assert_array_equal(data.train_images[0, :, :, 0].reshape(-1), raw[b"data"][0][:1024])


def test_load_cifar10_limited_is_seeded_subset(image_folder_dataset: Path, tmp_path: Path) -> None:
    data = load_cifar10(str(image_folder_dataset), cache_dir=tmp_path, progress=False)
    subset = data.limited(7, seed=3)
    assert len(subset.train_labels) == 7 and len(subset.test_labels) == 7
    np.testing.assert_array_equal(subset.train_labels, data.limited(7, seed=3).train_labels)


def test_load_cifar10_missing_directory_names_path(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_cifar10(str(tmp_path / "nowhere"))


def test_load_cifar10_wrong_layout(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    with pytest.raises(DatasetError, match="expected train/ and test/"):
        load_cifar10(str(tmp_path))


def test_load_cifar10_unknown_class_folder(image_folder_dataset: Path, tmp_path: Path) -> None:
    (image_folder_dataset / "train" / "unicorn").mkdir()
    with pytest.raises(DatasetError, match="unknown class folder.*unicorn"):
        load_cifar10(str(image_folder_dataset), cache_dir=tmp_path / "c", progress=False)


def test_load_cifar10_missing_class_folder(image_folder_dataset: Path, tmp_path: Path) -> None:
    for path in (image_folder_dataset / "test" / "frog").iterdir():
        path.unlink()
    (image_folder_dataset / "test" / "frog").rmdir()
    with pytest.raises(DatasetError, match="lacks class folder.*frog"):
        load_cifar10(str(image_folder_dataset), cache_dir=tmp_path / "c", progress=False)


def test_load_cifar10_unreadable_image_names_file(
    image_folder_dataset: Path, tmp_path: Path
) -> None:
    broken = image_folder_dataset / "train" / "dog" / "0000.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match=r"cannot read image .*dog.*0000\.jpg"):
        load_cifar10(str(image_folder_dataset), cache_dir=tmp_path / "c", progress=False)


def test_load_cifar10_wrong_image_size(image_folder_dataset: Path, tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (64, 64)).save(image_folder_dataset / "train" / "dog" / "0000.jpg")
    with pytest.raises(DatasetError, match="64x64: CIFAR-10 images are 32x32"):
        load_cifar10(str(image_folder_dataset), cache_dir=tmp_path / "c", progress=False)


def test_load_cifar10_truncated_python_batch(python_batches_dataset: Path) -> None:
    (python_batches_dataset / "data_batch_3").write_bytes(b"\x80\x04")
    with pytest.raises(DatasetError, match="data_batch_3"):
        load_cifar10(str(python_batches_dataset))
