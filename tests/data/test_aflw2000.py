"""Tests for the AFLW2000-3D TFDS builder on a tiny manual_dir in the real AFLW2000-3D layout."""

import pickle

import cv2
import numpy as np
import pytest
import scipy.io

from faceflax.data import aflw2000

NAMES = ["image00002", "image00004", "image00019"]


def annotation(k):
    """Distinct 1-based Matlab landmarks and a pose for example ``k``, in the official field shapes."""
    rng = np.random.default_rng(k)
    pt3d = np.stack([rng.uniform(1, 450, 68), rng.uniform(1, 450, 68), rng.uniform(-80, 80, 68)])
    pose = np.array([[0.1 * (k + 1), -0.5 + 0.3 * k, 0.05 * k, 200.0, 210.0, 0.0, 0.0012]])
    return {
        "pt3d_68": pt3d,
        "Pose_Para": pose,
        "Shape_Para": rng.normal(size=(199, 1)),
        "Exp_Para": rng.normal(size=(29, 1)),
        "roi": np.array([[60.0, 70.0, 390.0, 400.0]]),
    }


def make_manual_dir(root, names=NAMES):
    image_dir = root / "AFLW2000"
    image_dir.mkdir(parents=True)
    yy, xx = np.mgrid[0:450, 0:450]
    for k, name in enumerate(names):
        bgr = np.stack([(xx * (k + 1)) % 256, (yy + 50 * k) % 256, (xx + yy) % 256], -1).astype(np.uint8)
        cv2.imwrite(str(image_dir / f"{name}.jpg"), bgr)
        scipy.io.savemat(str(image_dir / f"{name}.mat"), annotation(k))
    return root


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("aflw2000")
    return make_manual_dir(root / "manual"), str(root / "tfds")


def test_images_landmarks_and_pose(dirs):
    manual_dir, data_dir = dirs
    source = aflw2000.load_aflw2000("test", data_dir, str(manual_dir))
    assert len(source) == len(NAMES)
    seen = []
    for i in range(len(source)):
        example = source[i]
        name = example["id"].decode()
        k = NAMES.index(name)
        truth = annotation(k)
        expected_image = cv2.imread(str(manual_dir / "AFLW2000" / f"{name}.jpg"))[..., ::-1]
        np.testing.assert_array_equal(example["image"], expected_image)
        assert example["landmarks"].dtype == np.float32 and example["landmarks"].shape == (68, 2)
        np.testing.assert_allclose(example["landmarks"][:, 0], truth["pt3d_68"][0] - 1, atol=1e-4)
        np.testing.assert_allclose(example["landmarks"][:, 1], truth["pt3d_68"][1] - 1, atol=1e-4)
        assert example["landmarks_3d"].shape == (68, 3)
        np.testing.assert_allclose(example["landmarks_3d"][:, :2], example["landmarks"])
        np.testing.assert_allclose(example["landmarks_3d"][:, 2], truth["pt3d_68"][2], atol=1e-4)
        np.testing.assert_allclose(example["pose"], truth["Pose_Para"][0, :3], atol=1e-6)
        seen.append(name)
    assert sorted(seen) == NAMES


def test_prepared_dataset_needs_no_manual_dir_and_pickles(dirs):
    manual_dir, data_dir = dirs
    aflw2000.load_aflw2000("test", data_dir, str(manual_dir))
    source = aflw2000.load_aflw2000("test", data_dir)
    clone = pickle.loads(pickle.dumps(source))
    np.testing.assert_array_equal(clone[1]["landmarks"], source[1]["landmarks"])


def test_missing_manual_dir(tmp_path):
    with pytest.raises(ValueError, match="does not exist") as info:
        aflw2000.load_aflw2000("test", str(tmp_path / "tfds"), str(tmp_path / "nope"))
    message = str(info.value)
    assert "manual_dir/AFLW2000/image00002.jpg, manual_dir/AFLW2000/image00002.mat" in message
    assert "xiangyuzhu/projects/3DDFA/main.htm" in message
    with pytest.raises(ValueError, match="no manual_dir was given"):
        aflw2000.load_aflw2000("test", str(tmp_path / "tfds"))
    (tmp_path / "other").mkdir()
    with pytest.raises(ValueError, match="lacks AFLW2000/"):
        aflw2000.load_aflw2000("test", str(tmp_path / "tfds"), str(tmp_path / "other"))
    make_manual_dir(tmp_path / "empty", names=[])
    with pytest.raises(ValueError, match="holds no .jpg images"):
        aflw2000.load_aflw2000("test", str(tmp_path / "tfds"), str(tmp_path / "empty"))


def test_missing_or_malformed_annotation(tmp_path):
    manual_dir = make_manual_dir(tmp_path / "manual")
    mat = manual_dir / "AFLW2000" / "image00004.mat"
    mat.unlink()
    with pytest.raises(ValueError, match=r"image00004\.jpg in .* has no image00004\.mat"):
        aflw2000.load_aflw2000("test", str(tmp_path / "tfds"), str(manual_dir))
    bad = annotation(1)
    bad["pt3d_68"] = bad["pt3d_68"].T
    scipy.io.savemat(str(mat), bad)
    with pytest.raises(ValueError, match=r"field pt3d_68 has shape \[68, 3\], expected \[3, 68\]"):
        aflw2000.load_aflw2000("test", str(tmp_path / "tfds"), str(manual_dir))
    del bad["pt3d_68"]
    scipy.io.savemat(str(mat), bad)
    with pytest.raises(ValueError, match="lacks the field pt3d_68"):
        aflw2000.load_aflw2000("test", str(tmp_path / "tfds"), str(manual_dir))
    mat.write_bytes(b"not a mat file")
    with pytest.raises(ValueError, match="not a readable .mat file"):
        aflw2000.load_aflw2000("test", str(tmp_path / "tfds"), str(manual_dir))


def test_wrong_size_or_unreadable_image(tmp_path):
    manual_dir = make_manual_dir(tmp_path / "manual")
    image = manual_dir / "AFLW2000" / "image00019.jpg"
    cv2.imwrite(str(image), np.zeros((400, 450, 3), np.uint8))
    with pytest.raises(ValueError, match=r"image00019\.jpg is 450x400, expected 450x450"):
        aflw2000.load_aflw2000("test", str(tmp_path / "tfds"), str(manual_dir))
    image.write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=r"image00019\.jpg is missing or unreadable"):
        aflw2000.load_aflw2000("test", str(tmp_path / "tfds"), str(manual_dir))


def test_bad_split(tmp_path):
    with pytest.raises(ValueError, match="valid splits: test"):
        aflw2000.load_aflw2000("train", str(tmp_path))
