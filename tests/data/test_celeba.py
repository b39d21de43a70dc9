"""Tests for the CelebA TFDS builder on a tiny manual_dir in the real CelebA layout."""

import pickle

import cv2
import numpy as np
import pytest
import tensorflow_datasets as tfds

from faceflax.data import celeba
from tests.celeba_layout import SPLIT_NAMES, make_manual_dir


def reference(manual_dir, name, resolution):
    """Independent crop: rows 39..179, cols 19..159 of the RGB image, INTER_AREA resize."""
    bgr = cv2.imread(str(manual_dir / "img_align_celeba" / name))
    rgb = np.ascontiguousarray(bgr[39:179, 19:159, ::-1])
    return cv2.resize(rgb, (resolution, resolution), interpolation=cv2.INTER_AREA)


def assert_close(actual, expected):
    diff = np.abs(actual.astype(np.int16) - expected.astype(np.int16))
    assert diff.max() <= 1


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("celeba")
    return make_manual_dir(root / "manual"), str(root / "tfds")


@pytest.mark.parametrize("resolution", [64, 128])
def test_splits_shapes_and_pixels(dirs, resolution):
    manual_dir, data_dir = dirs
    for split, names in SPLIT_NAMES.items():
        source = celeba.load_celeba(split, resolution, data_dir, str(manual_dir))
        assert len(source) == len(names)
        expected = {n: reference(manual_dir, n, resolution) for n in names}
        matched = []
        for i in range(len(source)):
            image = source[i]
            assert image.dtype == np.uint8 and image.shape == (resolution, resolution, 3)
            hits = [n for n, ref in expected.items() if np.abs(image.astype(int) - ref).max() <= 1]
            assert len(hits) == 1
            matched += hits
        assert sorted(matched) == names


def test_builder_examples_pair_id_with_its_crop(dirs):
    manual_dir, data_dir = dirs
    celeba.load_celeba("validation", 64, data_dir, str(manual_dir))
    builder = celeba.CelebA(config="64", data_dir=data_dir)
    assert builder.info.file_format.value == "array_record"
    source = builder.as_data_source(split="test")
    ids = []
    for i in range(len(source)):
        example = source[i]
        name = example["id"].decode() if isinstance(example["id"], bytes) else example["id"]
        assert_close(example["image"], reference(manual_dir, name, 64))
        ids.append(name)
    assert sorted(ids) == SPLIT_NAMES["test"]


def test_prepared_dataset_needs_no_manual_dir_and_pickles(dirs):
    manual_dir, data_dir = dirs
    celeba.load_celeba("train", 64, data_dir, str(manual_dir))
    source = celeba.load_celeba("train", 64, data_dir)
    clone = pickle.loads(pickle.dumps(source))  # grain workers pickle their data source.
    np.testing.assert_array_equal(clone[0], source[0])


def test_crop_and_resize_matches_reference(dirs):
    manual_dir, _ = dirs
    bgr = cv2.imread(str(manual_dir / "img_align_celeba" / "000001.jpg"))
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(celeba.crop_and_resize(rgb, 128), reference(manual_dir, "000001.jpg", 128))
    with pytest.raises(ValueError, match="218x178"):
        celeba.crop_and_resize(rgb[:200], 64)


def test_missing_manual_dir(tmp_path):
    with pytest.raises(ValueError, match="does not exist") as info:
        celeba.load_celeba("train", 64, str(tmp_path / "tfds"), str(tmp_path / "nope"))
    message = str(info.value)
    assert "Align&Cropped Images" in message and "Eval partition" in message
    assert "manual_dir/img_align_celeba/000001.jpg" in message
    assert "mmlab.ie.cuhk.edu.hk/projects/CelebA.html" in message
    with pytest.raises(ValueError, match="no manual_dir was given"):
        celeba.load_celeba("train", 64, str(tmp_path / "tfds"))


def test_missing_manual_dir_through_builder(tmp_path):
    builder = celeba.CelebA(config="64", data_dir=str(tmp_path / "tfds"))
    config = tfds.download.DownloadConfig(manual_dir=str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="Align&Cropped Images"):
        builder.download_and_prepare(download_config=config)


def test_missing_partition_file_or_image_dir(tmp_path):
    manual_dir = make_manual_dir(tmp_path / "manual")
    (manual_dir / "list_eval_partition.txt").unlink()
    with pytest.raises(ValueError, match="lacks list_eval_partition.txt"):
        celeba.load_celeba("train", 64, str(tmp_path / "tfds"), str(manual_dir))
    (manual_dir / "list_eval_partition.txt").write_text("000001.jpg 0\n")
    (manual_dir / "img_align_celeba").rename(manual_dir / "images")
    with pytest.raises(ValueError, match="lacks img_align_celeba/"):
        celeba.load_celeba("train", 64, str(tmp_path / "tfds"), str(manual_dir))


def test_missing_or_unreadable_listed_image(tmp_path):
    manual_dir = make_manual_dir(tmp_path / "manual")
    (manual_dir / "img_align_celeba" / "000005.jpg").unlink()
    with pytest.raises(ValueError, match=r"000005\.jpg .*missing or unreadable"):
        celeba.load_celeba("train", 64, str(tmp_path / "tfds"), str(manual_dir))
    (manual_dir / "img_align_celeba" / "000005.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=r"000005\.jpg .*missing or unreadable"):
        celeba.load_celeba("train", 64, str(tmp_path / "tfds"), str(manual_dir))


def test_bad_split_and_resolution(tmp_path):
    with pytest.raises(ValueError, match="valid splits: train, validation, test"):
        celeba.load_celeba("val", 64, str(tmp_path))
    with pytest.raises(ValueError, match="valid resolutions: 64, 128"):
        celeba.load_celeba("train", 32, str(tmp_path))
