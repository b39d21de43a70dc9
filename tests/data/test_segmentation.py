"""Landmark segmentation maps (faceflax.data.segmentation): coverage, exclusivity, one-hot, errors."""

import cv2
import numpy as np
import pytest

from faceflax.data import segmentation
from faceflax.reconstruct.texture import face_region_mask
from tests.data.test_align import ASTRONAUT_LANDMARKS

SIZE = (512, 512)
LANDMARKS = ASTRONAUT_LANDMARKS + np.float32([0.3, -0.4])  # sub-pixel positions


def signed_distances(polygon, shape):
    """Signed distance (positive inside) of every pixel centre to ``polygon``."""
    contour = np.asarray(polygon, np.float32).reshape(-1, 1, 2)
    (x0, y0), (x1, y1) = np.floor(polygon.min(0)) - 3, np.ceil(polygon.max(0)) + 3
    distances = np.full(shape, -np.inf)
    for y in range(max(int(y0), 0), min(int(y1), shape[0] - 1) + 1):
        for x in range(max(int(x0), 0), min(int(x1), shape[1] - 1) + 1):
            distances[y, x] = cv2.pointPolygonTest(contour, (float(x), float(y)), True)
    return distances


def test_one_hot_shapes_and_sums():
    seg = segmentation.segmentation_map(LANDMARKS, SIZE)
    assert seg.shape == SIZE + (segmentation.NUM_CLASSES,) and seg.dtype == np.float32
    assert set(np.unique(seg)) == {0.0, 1.0}
    assert np.array_equal(seg.sum(-1), np.ones(SIZE, np.float32))  # exclusive: one class per pixel
    labels = segmentation.label_map(LANDMARKS, SIZE)
    assert labels.dtype == np.int32 and np.array_equal(np.argmax(seg, -1), labels)
    assert np.all(seg.reshape(-1, segmentation.NUM_CLASSES).sum(0) > 0)  # every component present
    assert segmentation.segmentation_map(LANDMARKS, (64, 48)).shape == (64, 48, segmentation.NUM_CLASSES)


def test_components_cover_their_polygon_interiors():
    labels = segmentation.label_map(LANDMARKS, SIZE)
    polygons = segmentation.component_polygons(LANDMARKS)
    distances = {name: signed_distances(polygon, SIZE) for name, polygon in polygons.items()}
    names = list(polygons)
    for k, name in enumerate(names, start=2):
        later = np.zeros(SIZE, bool)
        for other in names[k - 1 :]:
            later |= distances[other] > -1
        interior = (distances[name] >= 1) & ~later
        assert interior.sum() > 0, name
        assert np.all(labels[interior] == k), name
        # Nothing of this class lies more than a pixel outside its polygon.
        assert np.all(distances[name][labels == k] > -1), name
    # Eye landmarks are on their eyes' boundaries: the pixel holding each one belongs to the eye.
    for indices, name in ((range(36, 42), "eye_left"), (range(42, 48), "eye_right")):
        x, y = np.round(LANDMARKS[list(indices)]).astype(int).T
        assert np.all(labels[y, x] == segmentation.COMPONENTS.index(name))
    # Skin: the face region less the components.
    region = face_region_mask(LANDMARKS, SIZE)
    far = np.all([distances[name] < -1 for name in names], axis=0)
    assert np.all(labels[region & far] == 1) and np.all(labels[~region & far] == 0)


def test_face_mask_is_the_union_of_the_components():
    mask = segmentation.face_mask(LANDMARKS, SIZE)
    assert mask.dtype == np.float32 and mask.shape == SIZE
    assert np.array_equal(mask > 0, segmentation.label_map(LANDMARKS, SIZE) > 0)
    assert np.all(mask[face_region_mask(LANDMARKS, SIZE)] == 1)


def test_landmarks_outside_the_image_are_clipped():
    labels = segmentation.label_map(LANDMARKS - np.float32([200, 100]), (128, 128))  # partly outside
    assert labels.shape == (128, 128) and labels.max() > 0


@pytest.mark.parametrize(
    "landmarks, size, match",
    [
        (LANDMARKS[:67], SIZE, "68"),
        (np.zeros((68, 3)), SIZE, r"\[68, 2\]"),
        (np.full((68, 2), np.nan), SIZE, "NaN"),
        (LANDMARKS, (512,), "image_size"),
        (LANDMARKS, (0, 5), "image_size"),
        (LANDMARKS, 512, "image_size"),
    ],
)
def test_bad_inputs_raise(landmarks, size, match):
    with pytest.raises(ValueError, match=match):
        segmentation.segmentation_map(landmarks, size)
