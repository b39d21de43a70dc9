"""Tests for the FFHQ TFDS builder on a tiny manual_dir in the official FFHQ layout."""

import pickle

import cv2
import numpy as np
import pytest

from faceflax.data import ffhq

IDS = [0, 999, 1000, 59999, 60000, 69999]  # both sides of the folder and the 60k train/test boundaries.
SPLIT_IDS = {"train": [0, 999, 1000, 59999], "test": [60000, 69999], "all": IDS}


def write_image(path, k, size):
    yy, xx = np.mgrid[0:size, 0:size]
    bgr = np.stack([(xx * (k + 1)) % 256, (yy + 40 * k) % 256, (xx + 3 * yy) % 256], -1).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), bgr)


def make_manual_dir(root, ids=IDS, size=512, flat=False):
    """The official layout images1024x1024/{idx // 1000 * 1000:05d}/{idx:05d}.png (or flat)."""
    image_dir = root / "images1024x1024"
    image_dir.mkdir(parents=True)
    (image_dir / "LICENSE.txt").write_text("CC BY-NC-SA 4.0")
    for k, idx in enumerate(ids):
        folder = image_dir if flat else image_dir / f"{idx // 1000 * 1000:05d}"
        write_image(folder / f"{idx:05d}.png", k, size)
    return root


def image_path(manual_dir, idx):
    return manual_dir / "images1024x1024" / f"{idx // 1000 * 1000:05d}" / f"{idx:05d}.png"


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ffhq")
    return make_manual_dir(root / "manual"), str(root / "tfds")


def test_splits_and_area_resized_pixels(dirs):
    manual_dir, data_dir = dirs
    for split, ids in SPLIT_IDS.items():
        source = ffhq.load_ffhq(split, 256, data_dir, str(manual_dir))
        assert len(source) == len(ids)
        seen = []
        for i in range(len(source)):
            example = source[i]
            idx = int(example["id"].decode()[:5])
            assert example["image"].dtype == np.uint8 and example["image"].shape == (256, 256, 3)
            rgb = cv2.imread(str(image_path(manual_dir, idx)))[..., ::-1].astype(float)
            expected = rgb.reshape(256, 2, 256, 2, 3).mean((1, 3))  # INTER_AREA at an exact factor 2.
            assert np.abs(example["image"] - expected).max() <= 1
            seen.append(idx)
        assert sorted(seen) == ids


def test_1024_config_keeps_official_pixels_and_flat_layout(tmp_path):
    manual_dir = make_manual_dir(tmp_path / "manual", ids=[5, 65000], size=1024, flat=True)
    source = ffhq.load_ffhq("test", 1024, str(tmp_path / "tfds"), str(manual_dir))
    assert len(source) == 1 and source[0]["id"] == b"65000.png"
    expected = cv2.imread(str(manual_dir / "images1024x1024" / "65000.png"))[..., ::-1]
    np.testing.assert_array_equal(source[0]["image"], expected)
    assert len(ffhq.load_ffhq("train", 1024, str(tmp_path / "tfds"))) == 1


def test_prepared_dataset_needs_no_manual_dir_and_pickles(dirs):
    manual_dir, data_dir = dirs
    ffhq.load_ffhq("train", 256, data_dir, str(manual_dir))
    source = ffhq.load_ffhq("all", 256, data_dir)
    clone = pickle.loads(pickle.dumps(source))
    np.testing.assert_array_equal(clone[3]["image"], source[3]["image"])


def test_missing_manual_dir(tmp_path):
    with pytest.raises(ValueError, match="does not exist") as info:
        ffhq.load_ffhq("train", 256, str(tmp_path / "tfds"), str(tmp_path / "nope"))
    message = str(info.value)
    assert "manual_dir/images1024x1024/00000/00000.png" in message
    assert "github.com/NVlabs/ffhq-dataset" in message
    with pytest.raises(ValueError, match="no manual_dir was given"):
        ffhq.load_ffhq("train", 256, str(tmp_path / "tfds"))
    (tmp_path / "other").mkdir()
    with pytest.raises(ValueError, match="lacks images1024x1024/"):
        ffhq.load_ffhq("train", 256, str(tmp_path / "tfds"), str(tmp_path / "other"))


@pytest.mark.parametrize(
    "name, message",
    [
        ("00000/01500.png", r"01500\.png belongs in images1024x1024/01000/"),
        ("00000/face.png", r"face\.png: expected a name 00000\.png \.\.\. 69999\.png"),
        ("70000/70000.png", r"70000\.png: expected a name"),
        ("00000.png", "appears twice"),
    ],
)
def test_misnamed_or_misplaced_images(tmp_path, name, message):
    manual_dir = make_manual_dir(tmp_path / "manual", ids=[0, 60000], size=64)
    write_image(manual_dir / "images1024x1024" / name, 0, 64)
    with pytest.raises(ValueError, match=message):
        ffhq.load_ffhq("train", 256, str(tmp_path / "tfds"), str(manual_dir))


def test_empty_or_unreadable_images(tmp_path):
    manual_dir = make_manual_dir(tmp_path / "manual", ids=[], size=64)
    with pytest.raises(ValueError, match="holds no PNG images"):
        ffhq.load_ffhq("train", 256, str(tmp_path / "tfds"), str(manual_dir))
    (manual_dir / "images1024x1024" / "00000").mkdir()
    (manual_dir / "images1024x1024" / "00000" / "00007.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"00007\.png is unreadable"):
        ffhq.load_ffhq("train", 256, str(tmp_path / "tfds"), str(manual_dir))


def test_bad_split_and_resolution(tmp_path):
    with pytest.raises(ValueError, match="valid splits: train, test, all"):
        ffhq.load_ffhq("validation", 256, str(tmp_path))
    with pytest.raises(ValueError, match="valid resolutions: 256, 1024"):
        ffhq.load_ffhq("train", 512, str(tmp_path))
