"""``faceflax reconstruct`` end to end on the embedded photos with ICT-FaceKit (the asset mirror).

Identity is measured as in thesis Table 4.2, with dlib's face descriptor: the re-rendered face and the
frontal view must stay within dlib's same-person distance (0.6) of the photo, and the two embedded people
must stay apart after reconstruction.
"""

import json

import cv2
import numpy as np
import pytest
import trimesh

from faceflax import cli
from faceflax.data import faces, images
from faceflax.reconstruct import texture
from faceflax.reconstruct.pipeline import Reconstructor

OUTPUTS = [
    "uv_incomplete.png",
    "uv_complete.png",
    "mesh.obj",
    "mesh.mtl",
    "material_0.png",
    "render.png",
    "view_frontal.png",
    "view_left.png",
    "view_right.png",
    "summary.png",
    "report.json",
]
# Mean landmark reprojection error over the outer-eye-corner distance (300-W's normalisation): measured
# 0.024 on both photos (1.4 px of 60 on the astronaut, 2.9 px of 120 on Grace Hopper).
MAX_NORMALISED_ERROR = 0.04


@pytest.fixture(scope="module")
def reconstructor(ict_face):
    return Reconstructor(ict_face)


@pytest.fixture(scope="module")
def astronaut(reconstructor):
    return reconstructor(images.default_photo("astronaut"), "astronaut")


@pytest.fixture(scope="module")
def grace_hopper(reconstructor):
    return reconstructor(images.read_image(images.grace_hopper_path()), "grace_hopper")


def skin_region(landmarks, size):
    """The face-region mask less the eyes (36-41, 42-47) and the inner mouth (60-67), dilated by 3 px."""
    openings = np.zeros(size, np.uint8)
    for ring in (range(36, 42), range(42, 48), range(60, 68)):
        cv2.fillPoly(openings, [np.round(landmarks[list(ring)]).astype(np.int32)], 1)
    openings = cv2.dilate(openings, np.ones((7, 7), np.uint8)).astype(bool)
    return texture.face_region_mask(landmarks, size) & ~openings


@pytest.mark.parametrize("person", ["astronaut", "grace_hopper"])
def test_fit_coverage_and_identity(person, request):
    rec = request.getfixturevalue(person)
    error = np.linalg.norm(rec.fitted - rec.detected, axis=-1)
    assert error.mean() / np.linalg.norm(rec.detected[36] - rec.detected[45]) < MAX_NORMALISED_ERROR
    # The rendered face covers the detected face region, except the ICT mesh's eye and mouth openings.
    assert rec.coverage[skin_region(rec.detected, rec.photo.shape[:2])].mean() > 0.99
    x0, y0, x1, y1 = rec.box
    assert rec.coverage[y0:y1, x0:x1].mean() > 0.8
    for name, distance in rec.identity.items():
        assert distance < faces.SAME_PERSON_THRESHOLD, (name, distance)


def test_the_two_people_stay_apart_after_reconstruction(astronaut, grace_hopper, reconstructor):
    def frontal_descriptor(rec):
        from faceflax.reconstruct import views

        posed = np.asarray(views.view_poses(rec.shape, [0.0]))
        marks = views.view_landmarks(posed, np.asarray(reconstructor.model.landmarks), reconstructor.view_camera)[0]
        return faces.face_descriptor(rec.views["frontal"], marks)

    a, b = frontal_descriptor(astronaut), frontal_descriptor(grace_hopper)
    assert faces.descriptor_distance(a, b) > faces.SAME_PERSON_THRESHOLD
    photo_a = faces.face_descriptor(astronaut.photo, astronaut.detected)
    assert faces.descriptor_distance(photo_a, b) > faces.SAME_PERSON_THRESHOLD


def test_completion_keeps_visible_texels_and_leaves_no_holes(astronaut, reconstructor):
    np.testing.assert_array_equal(astronaut.completed[astronaut.visible], astronaut.sampled[astronaut.visible])
    layout = reconstructor.layout
    assert np.isfinite(astronaut.completed).all()
    assert astronaut.completed[layout].max(-1).min() > 0.05  # nothing in the layout stayed black
    assert 0.15 < astronaut.visible[layout].mean() < 0.6  # a frontal photo shows a good part of the head front


def test_default_command_writes_every_output(asset_mirror, tmp_path, capsys):
    assert cli.main(["reconstruct", "--out", str(tmp_path), "--no-progress"]) == 0
    folder = tmp_path / "astronaut"
    assert sorted(p.name for p in folder.iterdir()) == sorted(OUTPUTS)
    report = json.loads((folder / "report.json").read_text())
    assert np.array(report["landmarks_fitted"]).shape == (68, 2)
    assert set(report["identity_distance"]) == {"render_at_input_pose", "frontal_view"}
    assert report["landmark_error_px"]["normalised_by_outer_eye_corners"] < MAX_NORMALISED_ERROR
    assert set(report["timings_s"]) >= {"read", "detect", "fit", "sample", "complete", "render", "identity"}
    mesh = trimesh.load(folder / "mesh.obj", process=False)
    assert mesh.visual.uv is not None and mesh.visual.material.image is not None
    assert report["model"]["name"] == "ict_face" and len(mesh.faces) == 18460  # the ICT face region
    incomplete = cv2.imread(str(folder / "uv_incomplete.png"), cv2.IMREAD_UNCHANGED)
    assert incomplete.shape == (512, 512, 4) and 0 < (incomplete[..., 3] > 0).mean() < 1
    assert "identity distance" in capsys.readouterr().out


def write_bad_inputs(folder):
    folder.mkdir()
    (folder / "notes.png").write_text("not an image")
    cv2.imwrite(str(folder / "no_face.png"), np.tile(np.linspace(0, 255, 200, dtype=np.uint8), (200, 1)))
    good = cv2.cvtColor(images.to_uint8(images.default_photo("astronaut")), cv2.COLOR_RGB2BGR)
    jpeg = cv2.imencode(".jpg", good)[1].tobytes()
    (folder / "broken.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    cv2.imwrite(str(folder / "dot.png"), np.zeros((1, 1, 3), np.uint8))
    cv2.imwrite(str(folder / "astronaut.png"), good)


def test_bad_photos_fail_clearly_and_the_others_still_run(asset_mirror, tmp_path, capsys):
    inputs = tmp_path / "photos"
    write_bad_inputs(inputs)
    out = tmp_path / "out"
    assert cli.main(["reconstruct", str(inputs), "--out", str(out), "--no-progress", "--no-identity"]) == 1
    err = capsys.readouterr().err
    assert (out / "astronaut" / "report.json").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["astronaut"]  # nothing half-written for the others
    for name, words in {
        "notes.png": "decode",
        "no_face.png": "no face found",
        "broken.jpg": "truncated",
        "dot.png": "too small",
    }.items():
        line = next(line for line in err.splitlines() if name in line)
        assert words in line.lower(), line
        assert cli.main(["reconstruct", str(inputs / name), "--out", str(out), "--no-progress"]) == 1
        assert "Traceback" not in capsys.readouterr().err


def test_user_landmarks_bypass_detection(asset_mirror, tmp_path, capsys):
    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), cv2.cvtColor(images.to_uint8(images.default_photo("astronaut")), cv2.COLOR_RGB2BGR))
    marks = tmp_path / "marks.json"
    marks.write_text(json.dumps(faces.detect_landmarks(photo).landmarks.tolist()))
    out = tmp_path / "out"
    args = ["reconstruct", str(photo), "--landmarks", str(marks), "--out", str(out), "--no-progress", "--no-identity"]
    assert cli.main(args) == 0
    report = json.loads((out / "astronaut" / "report.json").read_text())
    assert report["landmarks_from"] == "user" and report["faces_found"] == 0
    assert cli.main([args[0], str(photo), *args[1:]]) == 2
    assert "landmarks of one photo" in capsys.readouterr().err
    assert cli.main(["reconstruct", "--out", str(out), "--model", "nonsense"]) == 2
    assert "unknown morphable model" in capsys.readouterr().err


def test_several_faces_the_largest_is_reconstructed_and_said(asset_mirror, tmp_path, capsys):
    astronaut = images.to_uint8(images.default_photo("astronaut"))
    grace = images.to_uint8(images.read_image(images.grace_hopper_path()))  # 600 x 512, the larger face
    photo = tmp_path / "two.png"
    cv2.imwrite(str(photo), cv2.cvtColor(np.concatenate([astronaut, grace[:512]], 1), cv2.COLOR_RGB2BGR))
    assert cli.main(["reconstruct", str(photo), "--out", str(tmp_path / "out"), "--no-identity"]) == 0
    assert "2 faces found, the largest reconstructed" in capsys.readouterr().out
    report = json.loads((tmp_path / "out" / "two" / "report.json").read_text())
    x0, _, x1, _ = report["face_box"]
    assert report["faces_found"] == 2 and x0 > 512 and x1 - x0 > 150  # Grace Hopper's face, right half


def test_mediapipe_model(asset_mirror, tmp_path):
    out = tmp_path / "out"
    assert cli.main(["reconstruct", "--model", "mediapipe", "--out", str(out), "--no-identity", "--uv-size", "256"]) == 0
    report = json.loads((out / "astronaut" / "report.json").read_text())
    assert report["model"]["name"] == "mediapipe" and report["visible_texel_fraction"] > 0.2
