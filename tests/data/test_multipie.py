"""Multi-PIE Setting 1 builder on a generated session-1 directory in the real layout."""

import cv2
import numpy as np
import pytest

from faceflax.data.multipie import CAMERA_YAW, NUM_TRAIN_SUBJECTS, load_multipie


def write_session(root, subjects, cameras=("05_1", "14_0", "11_0"), illuminations=(0, 7)):
    base = root / "Multi-Pie" / "data" / "session01" / "multiview"
    for subject in subjects:
        for camera in (*cameras, "08_1"):  # 08_1 is not one of Setting 1's cameras: ignored
            folder = base / f"{subject:03d}" / "01" / camera
            folder.mkdir(parents=True)
            for illumination in illuminations:
                image = np.full((48, 64, 3), (subject % 250, illumination * 30, len(camera)), np.uint8)
                image[:, :8] = 255  # outside the central square: cut away
                name = f"{subject:03d}_01_01_{camera.replace('_', '')}_{illumination:02d}.png"
                cv2.imwrite(str(folder / name), image)
    return base


def test_setting_1_splits_by_subject_and_reads_pose_and_illumination(tmp_path):
    subjects = list(range(1, NUM_TRAIN_SUBJECTS + 3))
    write_session(tmp_path / "manual", subjects, cameras=("05_1",), illuminations=(3,))
    train = load_multipie("train", 128, str(tmp_path / "tfds"), str(tmp_path / "manual"))
    test = load_multipie("test", 128, str(tmp_path / "tfds"))  # prepared: no manual_dir needed
    assert len(train) == NUM_TRAIN_SUBJECTS and len(test) == 2
    assert sorted(int(test[i]["subject"]) for i in range(2)) == [NUM_TRAIN_SUBJECTS + 1, NUM_TRAIN_SUBJECTS + 2]


def test_examples_hold_the_central_square_camera_yaw_and_illumination(tmp_path):
    write_session(tmp_path / "manual", [5, 9])
    source = load_multipie("train", 128, str(tmp_path / "tfds"), str(tmp_path / "manual"))
    assert len(source) == 2 * 3 * 2
    examples = [source[i] for i in range(len(source))]
    cameras = {ex["camera"].decode() if isinstance(ex["camera"], bytes) else ex["camera"] for ex in examples}
    assert cameras == {"05_1", "14_0", "11_0"}
    for ex in examples:
        camera = ex["camera"].decode() if isinstance(ex["camera"], bytes) else ex["camera"]
        assert ex["yaw"] == CAMERA_YAW[camera] and ex["image"].shape == (128, 128, 3)
        # written as BGR (subject, 30 x illumination, 4): read back as RGB
        np.testing.assert_array_equal(ex["image"][0, 0], [4, int(ex["illumination"]) * 30, int(ex["subject"])])


def test_missing_or_misnamed_downloads_name_the_layout(tmp_path):
    with pytest.raises(ValueError, match="session01"):
        load_multipie("train", 128, str(tmp_path / "tfds"), str(tmp_path))
    base = write_session(tmp_path / "manual", [1])
    (base / "001" / "01" / "05_1" / "wrong.png").write_bytes(b"")
    with pytest.raises(ValueError, match="misnamed"):
        load_multipie("train", 128, str(tmp_path / "tfds2"), str(tmp_path / "manual"))
    with pytest.raises(ValueError, match="valid splits"):
        load_multipie("val", 128, str(tmp_path / "tfds"))


def test_a_copy_without_test_subjects_says_so(tmp_path):
    write_session(tmp_path / "manual", [1, 2], cameras=("05_1",), illuminations=(0,))
    assert len(load_multipie("train", 128, str(tmp_path / "tfds"), str(tmp_path / "manual"))) == 2
    with pytest.raises(ValueError, match="has no 'test' split"):
        load_multipie("test", 128, str(tmp_path / "tfds"))
