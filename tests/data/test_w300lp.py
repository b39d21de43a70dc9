"""Tests for the 300W-LP TFDS builder on a tiny manual_dir in the real 300W-LP layout."""

import pickle
import shutil

import cv2
import numpy as np
import pytest
import scipy.io

from faceflax.data import w300lp

SUBSETS = ["AFW", "HELEN", "IBUG", "LFPW", "AFW_Flip", "HELEN_Flip", "IBUG_Flip", "LFPW_Flip"]
NAMES = {"AFW": ["AFW_134212_1_0", "AFW_134212_1_3"], "HELEN": ["HELEN_232194_1_0"], "IBUG": ["IBUG_image_003_1_2"]}
NAMES |= {"LFPW": ["LFPW_image_train_0001_0"]} | {f"{s}_Flip": n for s, n in NAMES.items()}


def points(seed, shape):
    return np.random.default_rng(seed).uniform(1, 450, shape)


def make_manual_dir(root):
    """One or two examples per subset; 1-based Matlab coordinates in the official field shapes (no pt3d_68)."""
    base = root / "300W_LP"
    yy, xx = np.mgrid[0:450, 0:450]
    for s, subset in enumerate(SUBSETS):
        (base / subset).mkdir(parents=True)
        for k, name in enumerate(NAMES.get(subset, [])):
            seed = 10 * s + k
            bgr = np.stack([(xx * (seed + 1)) % 256, (yy + 7 * seed) % 256, (xx + yy) % 256], -1).astype(np.uint8)
            cv2.imwrite(str(base / subset / f"{name}.jpg"), bgr)
            mat = {
                "pt2d": points(seed + 1000, (2, 68)),
                "Pose_Para": np.array([[0.1, -1.2 + 0.1 * seed, 0.02 * k, 220.0, 230.0, 0.0, 0.0011]]),
                "Shape_Para": np.zeros((199, 1)),
                "Exp_Para": np.zeros((29, 1)),
                "roi": np.array([[50.0, 60.0, 400.0, 410.0]]),
            }
            scipy.io.savemat(str(base / subset / f"{name}.mat"), mat)
            if "_Flip" not in subset:
                (base / "landmarks" / subset).mkdir(parents=True, exist_ok=True)
                pts = {"pts_2d": points(seed + 2000, (68, 2)), "pts_3d": points(seed + 3000, (68, 2))}
                scipy.io.savemat(str(base / "landmarks" / subset / f"{name}_pts.mat"), pts)
    for subset in SUBSETS[:4]:
        (base / "landmarks" / subset).mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("w300lp")
    return make_manual_dir(root / "manual"), str(root / "tfds")


def test_examples_landmarks_pose_and_subsets(dirs):
    manual_dir, data_dir = dirs
    source = w300lp.load_w300lp("train", data_dir, str(manual_dir))
    expected_ids = sorted(f"{s}/{n}" for s, names in NAMES.items() for n in names)
    assert len(source) == len(expected_ids)
    seen = []
    for i in range(len(source)):
        example = source[i]
        subset, name = example["id"].decode().split("/")
        assert example["subset"].decode() == subset
        stem = manual_dir / "300W_LP" / subset / name
        mat = scipy.io.loadmat(f"{stem}.mat")
        np.testing.assert_array_equal(example["image"], cv2.imread(f"{stem}.jpg")[..., ::-1])
        if subset.endswith("_Flip"):
            expected = mat["pt2d"].T - 1
        else:
            expected = scipy.io.loadmat(manual_dir / "300W_LP" / "landmarks" / subset / f"{name}_pts.mat")["pts_2d"] - 1
        assert example["landmarks"].dtype == np.float32 and example["landmarks"].shape == (68, 2)
        np.testing.assert_allclose(example["landmarks"], expected, atol=1e-4)
        assert "landmarks_3d" not in example  # 300W-LP's .mat files carry no pt3d_68
        np.testing.assert_allclose(example["pose"], mat["Pose_Para"][0, :3], atol=1e-6)
        seen.append(f"{subset}/{name}")
    assert sorted(seen) == expected_ids


def test_prepared_dataset_needs_no_manual_dir_and_pickles(dirs):
    manual_dir, data_dir = dirs
    w300lp.load_w300lp("train", data_dir, str(manual_dir))
    source = w300lp.load_w300lp("train", data_dir)
    clone = pickle.loads(pickle.dumps(source))
    np.testing.assert_array_equal(clone[2]["landmarks"], source[2]["landmarks"])


def test_missing_manual_dir(tmp_path):
    with pytest.raises(ValueError, match="does not exist") as info:
        w300lp.load_w300lp("train", str(tmp_path / "tfds"), str(tmp_path / "nope"))
    message = str(info.value)
    assert "manual_dir/300W_LP/{AFW,HELEN,IBUG,LFPW,AFW_Flip,HELEN_Flip,IBUG_Flip,LFPW_Flip}/" in message
    assert "manual_dir/300W_LP/landmarks/{AFW,HELEN,IBUG,LFPW}/{name}_{k}_pts.mat" in message
    with pytest.raises(ValueError, match="no manual_dir was given"):
        w300lp.load_w300lp("train", str(tmp_path / "tfds"))


@pytest.mark.parametrize("folder", ["IBUG_Flip", "landmarks/HELEN"])
def test_missing_subset_folder(tmp_path, folder):
    manual_dir = make_manual_dir(tmp_path / "manual")
    shutil.rmtree(manual_dir / "300W_LP" / folder)
    with pytest.raises(ValueError, match=f"lacks 300W_LP/{folder}/"):
        w300lp.load_w300lp("train", str(tmp_path / "tfds"), str(manual_dir))


def test_missing_or_malformed_landmarks(tmp_path):
    manual_dir = make_manual_dir(tmp_path / "manual")
    landmarks = manual_dir / "300W_LP" / "landmarks" / "AFW" / "AFW_134212_1_3_pts.mat"
    landmarks.unlink()
    with pytest.raises(ValueError, match=r"AFW_134212_1_3_pts\.mat \(landmarks of .*AFW_134212_1_3\.jpg\) is missing"):
        w300lp.load_w300lp("train", str(tmp_path / "tfds"), str(manual_dir))
    scipy.io.savemat(str(landmarks), {"pts_2d": np.zeros((2, 68))})
    with pytest.raises(ValueError, match=r"field pts_2d has shape \[2, 68\], expected \[68, 2\]"):
        w300lp.load_w300lp("train", str(tmp_path / "tfds"), str(manual_dir))
    (manual_dir / "300W_LP" / "AFW" / "AFW_134212_1_0.mat").unlink()
    with pytest.raises(ValueError, match=r"AFW_134212_1_0\.jpg in .* has no AFW_134212_1_0\.mat"):
        w300lp.load_w300lp("train", str(tmp_path / "tfds"), str(manual_dir))


def test_flipped_annotation_without_pt2d(tmp_path):
    manual_dir = make_manual_dir(tmp_path / "manual")
    mat_path = manual_dir / "300W_LP" / "HELEN_Flip" / "HELEN_232194_1_0.mat"
    mat = scipy.io.loadmat(mat_path)
    scipy.io.savemat(str(mat_path), {"Pose_Para": mat["Pose_Para"]})
    with pytest.raises(ValueError, match="lacks the field pt2d"):
        w300lp.load_w300lp("train", str(tmp_path / "tfds"), str(manual_dir))


def test_bad_split(tmp_path):
    with pytest.raises(ValueError, match="valid splits: train"):
        w300lp.load_w300lp("test", str(tmp_path))
