"""Tests for photo reading and dlib faces: detection, landmarks, descriptors, landmark files."""

import json

import cv2
import numpy as np
import pytest
import skimage.data

from faceflax.data import faces, images


def write_image(path, rgb):
    """Writes a uint8 RGB(A) array with OpenCV (BGR(A) on disk) and returns the path."""
    bgr = rgb[..., [2, 1, 0, 3][: rgb.shape[2]]] if rgb.ndim == 3 else rgb
    assert cv2.imwrite(str(path), bgr)
    return path


@pytest.fixture(scope="module")
def astronaut():
    return images.default_photo("astronaut")


@pytest.fixture(scope="module")
def grace_hopper():
    pytest.importorskip("matplotlib", reason="grace_hopper is matplotlib's sample photo")
    return images.default_photo("grace_hopper")


@pytest.fixture(scope="module")
def photos(astronaut, grace_hopper):
    return {"astronaut": astronaut, "grace_hopper": grace_hopper}


@pytest.fixture(scope="module")
def detections(photos):
    return {name: faces.detect_landmarks(photo) for name, photo in photos.items()}


# ---------------------------------------------------------------------------------------------
# Reading images


def test_default_photos(astronaut, grace_hopper):
    for photo in (astronaut, grace_hopper):
        assert photo.dtype == np.float32 and photo.ndim == 3 and photo.shape[2] == 3
        assert 0.0 <= photo.min() and photo.max() <= 1.0
    np.testing.assert_array_equal(np.round(astronaut * 255).astype(np.uint8), skimage.data.astronaut())
    assert grace_hopper.shape == (600, 512, 3)
    with pytest.raises(ValueError, match="unknown default photo 'lena'"):
        images.default_photo("lena")


def test_grace_hopper_without_matplotlib_says_how_to_install(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(ValueError, match="pip install matplotlib"):
        images.default_photo("grace_hopper")


def test_file_round_trip_with_non_ascii_path(tmp_path, astronaut):
    rgb = skimage.data.astronaut()
    path = write_image(tmp_path / "фото 顔.png", rgb)
    np.testing.assert_array_equal(images.read_image(path), astronaut)
    jpeg = images.read_image(write_image(tmp_path / "фото 顔.jpg", rgb))
    assert jpeg.shape == astronaut.shape and np.abs(jpeg - astronaut).mean() < 0.02  # lossy, not BGR


def test_uint16_and_float_inputs(astronaut):
    rgb16 = skimage.data.astronaut().astype(np.uint16) * 257
    np.testing.assert_allclose(images.read_image(rgb16), astronaut, atol=1e-6)
    np.testing.assert_array_equal(images.read_image(astronaut.astype(np.float64)), astronaut)


def test_jpeg_with_data_after_its_end_is_read(tmp_path, astronaut):
    _, encoded = cv2.imencode(".jpg", skimage.data.astronaut()[..., ::-1])
    path = tmp_path / "motion_photo.jpg"
    path.write_bytes(encoded.tobytes() + b"\x00\x00\x00\x18ftypmp42 appended video")
    assert images.read_image(path).shape == astronaut.shape


def test_truncated_jpeg_is_caught_before_decoding_even_with_a_thumbnail(tmp_path):
    # OpenCV 4 decodes a truncated JPEG into a half-grey image with a warning; the structure walk
    # catches it whatever the OpenCV version, and is not fooled by the complete thumbnail JPEG
    # (with its own end-of-image marker) inside an EXIF segment.
    rgb = skimage.data.astronaut()[..., ::-1]
    main, thumb = (cv2.imencode(".jpg", a)[1].tobytes() for a in (rgb, rgb[::8, ::8]))
    payload = b"Exif\0\0" + thumb
    with_thumb = main[:2] + b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + main[2:]
    path = tmp_path / "camera.jpg"
    path.write_bytes(with_thumb)
    assert images.read_image(path).shape == (512, 512, 3)
    truncated = with_thumb[: len(with_thumb) // 2]
    assert b"\xff\xd9" in truncated
    path.write_bytes(truncated)
    with pytest.raises(ValueError, match="truncated JPEG"):
        images.read_image(path)
    progressive = cv2.imencode(".jpg", rgb, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    path.write_bytes(progressive[:-100])
    with pytest.raises(ValueError, match="truncated JPEG"):
        images.read_image(path)


def bad_files(tmp_path):
    """name -> (path, expected message fragment)."""
    text = tmp_path / "notes.jpg"
    text.write_text("this is a text file, not a photo\n" * 20)
    _, encoded = cv2.imencode(".jpg", skimage.data.astronaut()[..., ::-1])
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(encoded.tobytes()[: len(encoded) * 2 // 3])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    tiny = write_image(tmp_path / "tiny.png", np.zeros((1, 1, 3), np.uint8))
    thin = write_image(tmp_path / "thin.png", np.zeros((200, 31, 3), np.uint8))
    huge = write_image(tmp_path / "huge.png", np.zeros((32, images.MAX_SIDE + 1), np.uint8))
    return {
        "missing": (tmp_path / "missing.jpg", "no such file"),
        "directory": (tmp_path, "is a directory"),
        "empty": (empty, "empty"),
        "text": (text, "not an image"),
        "truncated": (truncated, "truncated JPEG"),
        "1x1": (tiny, "1x1 pixels is too small"),
        "31 wide": (thin, "31x200 pixels is too small"),
        "too large": (huge, f"{images.MAX_SIDE + 1}x32 pixels is too large"),
    }


@pytest.mark.parametrize("case", ["missing", "directory", "empty", "text", "truncated", "1x1", "31 wide", "too large"])
def test_bad_files_raise_one_clear_value_error(tmp_path, case):
    path, fragment = bad_files(tmp_path)[case]
    with pytest.raises(ValueError, match=fragment) as error:
        images.read_image(path)
    assert str(path) in str(error.value)
    with pytest.raises(ValueError, match=fragment):  # the same error through the face API
        faces.detect_landmarks(path)


@pytest.mark.parametrize(
    "array, fragment",
    [
        (np.zeros((64, 64, 3), np.int64), "dtype int64"),
        (np.zeros((64, 64, 3), bool), "dtype bool"),
        (np.full((64, 64, 3), 200.0, np.float32), r"divide by 255"),
        (np.full((64, 64, 3), -0.5, np.float32), r"\[0, 1\]"),
        (np.full((64, 64, 3), np.nan, np.float32), "NaN"),
        (np.zeros((64, 64, 5), np.uint8), r"shape \(64, 64, 5\)"),
        (np.zeros((2, 64, 64, 3), np.uint8), r"shape \(2, 64, 64, 3\)"),
        (np.zeros((64,), np.uint8), r"shape \(64,\)"),
        (np.zeros((16, 64, 3), np.uint8), "64x16 pixels is too small"),
    ],
)
def test_bad_arrays(array, fragment):
    with pytest.raises(ValueError, match=fragment):
        images.read_image(array)
    with pytest.raises(ValueError, match=fragment):
        faces.detect_faces(array)


def test_wrong_type_is_a_type_error():
    with pytest.raises(TypeError):
        images.read_image([[0.0]])


def test_alpha_is_composited_over_white(tmp_path):
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 0] = 255  # red, ...
    rgba[:, :20, 3] = 255  # opaque on the left, transparent on the right
    rgba[:, 20:30, 3] = 128  # half transparent in between
    for image in (images.read_image(rgba), images.read_image(write_image(tmp_path / "rgba.png", rgba))):
        np.testing.assert_allclose(image[:, :20], np.broadcast_to([1.0, 0.0, 0.0], (40, 20, 3)))
        np.testing.assert_allclose(image[:, 30:], 1.0)
        np.testing.assert_allclose(image[:, 20:30, 1:], 127 / 255, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Detection and landmarks


def test_astronaut_false_positive_is_dropped(astronaut):
    (face,) = faces.detect_faces(astronaut)
    # upsample 1 adds a weak detection on the suit, below the face; the relative score drops it
    raw = faces.detect_faces(astronaut, upsample=1, min_relative_score=0.0)
    assert len(raw) == 2 and raw[1][1] > face[3]
    assert len(faces.detect_faces(astronaut, upsample=1)) == 1
    # at upsample 0 it comes back on a padded copy, larger than the face
    padded = np.ones((600, 600, 3), np.float32)
    padded[:512, :512] = astronaut
    raw = faces.detect_faces(padded, min_relative_score=0.0)
    assert len(raw) == 2 and raw[0][1] > face[3]
    assert faces.detect_faces(padded) == [face]


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_one_face_and_sane_landmarks(photos, detections, name):
    photo, detection = photos[name], detections[name]
    assert faces.detect_faces(photo) == [detection.box]
    assert detection.num_faces == 1
    landmarks = detection.landmarks
    assert landmarks.shape == (68, 2) and landmarks.dtype == np.float32
    x0, y0, x1, y1 = detection.box
    margin = 0.15 * (x1 - x0)  # the chin and jaw reach a little outside dlib's box
    assert (landmarks[:, 0] >= x0 - margin).all() and (landmarks[:, 0] <= x1 + margin).all()
    assert (landmarks[:, 1] >= y0 - margin).all() and (landmarks[:, 1] <= y1 + margin).all()
    left_eye, right_eye = landmarks[36:40], landmarks[42:46]  # eye corners, as seen in the image
    assert left_eye[:, 0].max() < right_eye[:, 0].min()
    eyes_y = np.concatenate([left_eye, right_eye])[:, 1].mean()
    mouth_y = landmarks[48:68, 1].mean()
    assert eyes_y < landmarks[30, 1] < mouth_y  # nose tip
    assert landmarks[8, 1] == landmarks[:, 1].max()  # chin lowest
    assert landmarks[17:27, 1].max() < eyes_y  # brows above the eyes


def test_grayscale_and_rgba_give_the_same_landmarks(astronaut, detections):
    rgb = skimage.data.astronaut()
    reference = detections["astronaut"].landmarks
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    from_grey = faces.detect_landmarks(grey).landmarks
    np.testing.assert_array_equal(from_grey, faces.detect_landmarks(np.repeat(grey[..., None], 3, 2)).landmarks)
    assert np.abs(from_grey - reference).max() <= 1.0  # colour -> grey moves landmarks by <= 1 px
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)
    np.testing.assert_array_equal(faces.detect_landmarks(rgba).landmarks, reference)
    np.testing.assert_array_equal(faces.detect_landmarks(astronaut.astype(np.float64)).landmarks, reference)


def test_landmarks_follow_a_shift_and_rescale(astronaut, detections):
    scale, (dx, dy) = 0.9, (7, 5)
    moved = cv2.resize(astronaut, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)[dy:, dx:]
    detection = faces.detect_landmarks(moved)
    assert detection.num_faces == 1  # the suit's weak detection at this scale is dropped
    assert len(faces.detect_faces(moved, min_relative_score=0.0)) == 2
    back = (detection.landmarks + [dx, dy]) / scale
    assert np.abs(back - detections["astronaut"].landmarks).max() < 4.0


@pytest.mark.parametrize(
    "name, make",
    [
        ("coffee", skimage.data.coffee),
        ("chelsea", skimage.data.chelsea),
        ("noise", lambda: np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)),
        ("blank", lambda: np.full((256, 256, 3), 200, np.uint8)),
    ],
)
def test_no_face(tmp_path, name, make):
    image = make()
    assert faces.detect_faces(image) == []
    path = write_image(tmp_path / f"{name}.png", image)
    with pytest.raises(faces.NoFaceError, match="no face found") as error:
        faces.detect_landmarks(path)
    assert str(path) in str(error.value) and isinstance(error.value, ValueError)
    with pytest.raises(faces.NoFaceError, match="upload/me.jpg"):
        faces.detect_landmarks(image, path_for_errors="upload/me.jpg")


def test_two_faces_reports_the_count_and_takes_the_largest(astronaut, grace_hopper, detections):
    canvas = np.ones((600, 1024, 3), np.float32)
    canvas[:, :512] = grace_hopper  # face box ~216 px
    canvas[:512, 512:] = astronaut  # face box ~88 px
    boxes = faces.detect_faces(canvas)
    assert len(boxes) == 2 and boxes[0][0] < 512 <= boxes[1][0]
    detection = faces.detect_landmarks(canvas)
    assert detection.num_faces == 2 and detection.box == boxes[0]
    assert np.abs(detection.landmarks - detections["grace_hopper"].landmarks).max() <= 1.0


# ---------------------------------------------------------------------------------------------
# Identity descriptors


def test_descriptors_same_person_close_different_people_far(photos, detections):
    descriptors = {}
    for name, photo in photos.items():
        descriptor = faces.face_descriptor(photo, detections[name])
        assert descriptor.shape == (128,) and descriptor.dtype == np.float32
        np.testing.assert_array_equal(descriptor, faces.face_descriptor(photo, detections[name].landmarks))
        moved = cv2.resize(photo, None, fx=0.9, fy=0.9, interpolation=cv2.INTER_AREA)[5:, 7:]
        again = faces.face_descriptor(moved, faces.detect_landmarks(moved))
        assert faces.descriptor_distance(descriptor, again) < 0.5 * faces.SAME_PERSON_THRESHOLD
        descriptors[name] = descriptor
    assert (
        faces.descriptor_distance(descriptors["astronaut"], descriptors["grace_hopper"]) > faces.SAME_PERSON_THRESHOLD
    )
    with pytest.raises(ValueError, match="shape"):
        faces.descriptor_distance(descriptors["astronaut"], descriptors["astronaut"][:64])


# ---------------------------------------------------------------------------------------------
# User landmark files


def test_load_landmarks_round_trip(tmp_path, detections):
    landmarks = detections["astronaut"].landmarks + np.float32(0.25)
    text = tmp_path / "face.txt"
    text.write_text("# x y\n" + "\n".join(f"{x} {y}" for x, y in landmarks) + "\n\n")
    csv = tmp_path / "face.csv"
    csv.write_text("\n".join(f"{x},{y}" for x, y in landmarks))
    npy = tmp_path / "face.npy"
    np.save(npy, landmarks)
    as_list = tmp_path / "list.json"
    as_list.write_text(json.dumps(landmarks.tolist()))
    as_dict = tmp_path / "dict.json"
    as_dict.write_text(json.dumps({"landmarks": landmarks.tolist()}))
    pts = tmp_path / "face.pts"  # iBUG: 1-based
    pts.write_text("version: 1\nn_points: 68\n{\n" + "\n".join(f"{x + 1} {y + 1}" for x, y in landmarks) + "\n}\n")
    for path in (text, csv, npy, as_list, as_dict, pts):
        loaded = faces.load_landmarks(path)
        assert loaded.dtype == np.float32 and loaded.shape == (68, 2)
        np.testing.assert_allclose(loaded, landmarks, atol=1e-5, err_msg=str(path))


@pytest.mark.parametrize(
    "filename, content, fragment",
    [
        ("67.txt", "\n".join(["1 2"] * 67), "expected 68 points .*got 67"),
        ("69.txt", "\n".join(["1 2"] * 69), "expected 68 points .*got 69"),
        ("three.txt", "\n".join(["1 2 3"] * 68), "line 1 is not two numbers"),
        ("word.txt", "\n".join(["1 2"] * 10 + ["x y"] + ["1 2"] * 57), "line 11 is not two numbers"),
        ("nan.txt", "\n".join(["1 nan"] * 68), "NaN"),
        ("67.json", json.dumps([[1, 2]] * 67), "got 67"),
        ("3d.json", json.dumps([[1, 2, 3]] * 68), r"shape \[68, 2\], got shape \(68, 3\)"),
        ("other.json", json.dumps({"points": []}), '"landmarks"'),
        ("broken.json", "[[1, 2], ", "Expecting"),
        ("nobrace.pts", "version: 1\nn_points: 68\n", "not an iBUG .pts file"),
    ],
)
def test_load_landmarks_errors(tmp_path, filename, content, fragment):
    path = tmp_path / filename
    path.write_text(content)
    with pytest.raises(ValueError, match=fragment) as error:
        faces.load_landmarks(path)
    assert str(path) in str(error.value)


def test_load_landmarks_npy_and_missing_errors(tmp_path):
    path = tmp_path / "few.npy"
    np.save(path, np.zeros((5, 2)))
    with pytest.raises(ValueError, match="got 5"):
        faces.load_landmarks(path)
    with pytest.raises(ValueError, match="no such file"):
        faces.load_landmarks(tmp_path / "absent.txt")
