"""Alignment by least-squares similarity (faceflax.data.align): recovery, round trips, half-face, errors."""

import cv2
import numpy as np
import pytest

from faceflax.data import align

# dlib's 68 landmarks of skimage's astronaut photo (512 x 512), iBUG order.
ASTRONAUT_LANDMARKS = np.array(
    [[179, 104], [179, 116], [180, 127], [181, 139], [185, 151], [191, 160], [200, 169], [209, 176], [221, 178],
     [232, 177], [243, 171], [253, 164], [260, 154], [265, 144], [268, 132], [270, 120], [272, 108], [186, 94],
     [192, 88], [200, 87], [208, 89], [216, 92], [236, 93], [244, 91], [252, 91], [260, 92], [265, 98], [225, 103],
     [225, 111], [225, 119], [225, 127], [214, 131], [219, 132], [224, 134], [229, 133], [234, 132], [195, 101],
     [200, 98], [207, 98], [212, 104], [206, 104], [199, 104], [238, 105], [244, 101], [250, 101], [255, 104],
     [250, 107], [244, 106], [201, 140], [209, 139], [218, 139], [223, 141], [229, 140], [237, 140], [245, 141],
     [237, 151], [229, 155], [222, 156], [216, 155], [208, 150], [204, 141], [217, 143], [223, 144], [229, 143],
     [243, 142], [229, 150], [223, 150], [217, 150]],
    np.float32,
)  # fmt: skip


def similarity(scale, angle, shift):
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[scale * c, -scale * s, shift[0]], [scale * s, scale * c, shift[1]]])


def apply(matrix, points):
    return np.asarray(points, np.float64) @ matrix[:, :2].T + matrix[:, 2]


def blob_image(points, shape, sigma):
    y, x = np.mgrid[: shape[0], : shape[1]]
    image = sum(np.exp(-((x - px) ** 2 + (y - py) ** 2) / (2 * sigma**2)) for px, py in points)
    return np.repeat(image[..., None], 3, 2).astype(np.float32)


def centroids(image, guesses, radius):
    """Intensity centroids of the blobs near ``guesses`` (pixel centres at integers), refined twice."""
    gray = image[..., 0]
    found = []
    for guess in np.asarray(guesses, np.float64):
        centre = guess
        for _ in range(3):
            x0, y0 = np.floor(centre - radius).astype(int)
            x1, y1 = np.ceil(centre + radius).astype(int) + 1
            window = gray[y0:y1, x0:x1]
            y, x = np.mgrid[y0:y1, x0:x1]
            centre = np.array([np.sum(window * x), np.sum(window * y)]) / np.sum(window)
        found.append(centre)
    return np.array(found)


def test_known_similarity_is_recovered_exactly():
    rng = np.random.default_rng(0)
    source = rng.uniform(0, 300, (68, 2))
    truth = similarity(1.7, 0.4, (12.0, -5.0))
    np.testing.assert_allclose(align.similarity_transform(source, apply(truth, source)), truth, atol=1e-9)
    # A reflected target still gives a rotation (Umeyama's guard): positive determinant.
    mirrored = apply(truth, source) * np.array([-1.0, 1.0])
    assert np.linalg.det(align.similarity_transform(source, mirrored)[:, :2]) > 0
    # Through alignment(): 5 landmarks placed by a known similarity P of the template give P^-1 exactly,
    # and moving 68 landmarks by P composes the fitted alignment with P^-1 (least squares is equivariant).
    photo_from_crop = np.vstack([similarity(2.3, -0.2, (40.0, 70.0)), [0, 0, 1]])
    crop_from_photo = np.linalg.inv(photo_from_crop)[:2]
    five = apply(photo_from_crop[:2], align.template(256))
    np.testing.assert_allclose(align.alignment(five, 256).matrix, crop_from_photo, atol=1e-9)
    fitted = np.vstack([align.alignment(ASTRONAUT_LANDMARKS, 256).matrix, [0, 0, 1]])
    moved = apply(photo_from_crop[:2], ASTRONAUT_LANDMARKS)
    np.testing.assert_allclose(
        align.alignment(moved, 256).matrix, (fitted @ np.linalg.inv(photo_from_crop))[:2], atol=1e-9
    )


def test_templates():
    np.testing.assert_allclose(align.template(112, 1.0), align.ARCFACE_TEMPLATE_112, atol=1e-12)
    eyes = align.template(256)[:2]
    assert abs(np.linalg.norm(eyes[1] - eyes[0]) / 256 - 0.25) < 0.005  # FFHQ's framing
    for size in (128, 224, 256):
        points = align.template(size)
        assert np.all((points > 0.2 * size) & (points < 0.8 * size))
        np.testing.assert_allclose(points[:, 0].mean(), (size - 1) / 2, atol=0.01 * size)


@pytest.mark.parametrize("spread, size", [(60.0, 256), (15.0, 224), (40.0, 128)])
def test_round_trip_on_image_within_one_pixel(spread, size):
    """Blobs drawn at 5 landmarks land on the transformed landmarks in the crop and back after paste_back."""
    unit = (align.ARCFACE_TEMPLATE_112 - 56) / 35.0
    sigma = max(0.08 * spread, 1.0)
    c, s = np.cos(0.3), np.sin(0.3)
    points = 200 + spread * unit @ np.array([[c, s], [-s, c]]) + np.array([0.37, -0.21])
    photo = blob_image(points, (400, 420), sigma=sigma)
    aligned = align.align(photo, points, size)
    radius = 3 * sigma * aligned.transform.scale + 1
    in_crop = np.abs(centroids(aligned.crop, aligned.landmarks, radius) - aligned.landmarks).max()
    back = align.paste_back(aligned.crop, aligned.transform, photo)
    in_photo = np.abs(centroids(back, points, 3 * sigma + 1) - points).max()
    assert in_crop < 1.0 and in_photo < 1.0, (in_crop, in_photo)  # measured 0.002-0.018 px (scales 0.8-3.2)
    np.testing.assert_allclose(aligned.transform.to_photo(aligned.landmarks), points, atol=1e-3)


@pytest.mark.parametrize("size", [224, 256])
def test_paste_back_of_unchanged_crop_reproduces_photo(size):
    y, x = np.mgrid[:300, :360].astype(np.float32)
    photo = np.stack(
        [0.5 + 0.4 * np.sin(x / 17 + y / 23), 0.5 + 0.4 * np.cos(x / 29 - y / 13), 0.5 + 0.3 * np.sin(y / 19)], -1
    ).astype(np.float32)
    landmarks = 0.8 * (ASTRONAUT_LANDMARKS - 100) + (20, 30)
    aligned = align.align(photo, landmarks, size)
    back = align.paste_back(aligned.crop, aligned.transform, photo)
    corners = np.array([[0, 0], [size - 1, 0], [size - 1, size - 1], [0, size - 1]], np.float64)
    inside = np.zeros(photo.shape[:2], np.uint8)
    cv2.fillPoly(inside, [np.round(aligned.transform.to_photo(corners)).astype(np.int32)], 1)
    inside = cv2.erode(inside, np.ones((5, 5), np.uint8), borderValue=0).astype(bool)  # 2 px off every edge
    error = np.abs(back - photo)[inside].max()
    assert error < 0.01, error  # measured 0.0012 (224, scale 1.48) and 0.0057 (256, scale 1.97)
    weight = align.paste_back(np.ones_like(aligned.crop), aligned.transform, np.zeros_like(photo))
    assert np.array_equal(back[weight[..., 0] == 0], photo[weight[..., 0] == 0])  # outside: untouched
    nothing = np.zeros((size, size), np.float32)
    masked = align.paste_back(np.zeros_like(aligned.crop), aligned.transform, photo, mask=nothing)
    assert np.array_equal(masked, photo)


def test_shrinking_averages_instead_of_aliasing():
    checker = ((np.indices((800, 800)).sum(0) % 2).astype(np.float32))[..., None]
    landmarks = 3.0 * ASTRONAUT_LANDMARKS
    aligned = align.align(checker, landmarks, 128)
    assert aligned.transform.scale < 0.5
    deviation = np.abs(aligned.crop[32:96, 32:96] - 0.5).max()
    assert deviation < 0.12, deviation  # a 1-px checkerboard averages to grey: measured 0.086
    plain = cv2.warpAffine(checker, aligned.transform.matrix, (128, 128), flags=cv2.INTER_LINEAR)
    assert np.abs(plain[32:96, 32:96] - 0.5).max() > 0.3  # a bare bilinear warp aliases


def test_half_face_alignment_fits_the_exposed_side():
    frontal = ASTRONAUT_LANDMARKS.astype(np.float64)
    middle = frontal[27:31, 0].mean()
    profile = frontal.copy()
    far = profile[:, 0] > middle
    profile[far, 0] = middle + 0.3 * (profile[far, 0] - middle)  # the image-right half turns away
    assert align.exposed_side(profile) == "left"
    assert align.exposed_side(profile[align.MIRROR] * (-1, 1) + (600, 0)) == "right"  # the mirror image
    truth = similarity(1.3, 0.1, (-150.0, -60.0))
    target = apply(truth, profile)
    rng = np.random.default_rng(1)
    hidden = np.setdiff1d(np.arange(68), align.IMAGE_LEFT_HALF)
    target[hidden] += rng.normal(0, 15, (len(hidden), 2))  # the hidden half does not match: ignored
    transform = align.half_face_transform(profile, target, 256)
    np.testing.assert_allclose(transform.matrix, truth, atol=1e-9)
    image = np.random.default_rng(2).uniform(0, 1, (512, 512, 3)).astype(np.float32)
    aligned = align.align_half_face(image, profile, target, 256)
    assert aligned.crop.shape == (256, 256, 3) and aligned.landmarks.shape == (68, 2)
    assert set(align.MIRROR[align.MIRROR]) == set(range(68)) and np.all(align.MIRROR[align.MIRROR] == np.arange(68))


def test_bad_inputs_raise():
    image = np.zeros((100, 100, 3), np.float32)
    with pytest.raises(ValueError, match=r"\[68, 2\]"):
        align.align(image, ASTRONAUT_LANDMARKS[:67], 256)
    with pytest.raises(ValueError, match="NaN"):
        align.align(image, np.full((68, 2), np.nan), 256)
    with pytest.raises(ValueError, match="at least 8"):
        align.align(image, ASTRONAUT_LANDMARKS, 4)
    with pytest.raises(ValueError, match="float"):
        align.align(np.zeros((100, 100, 3), np.uint8), ASTRONAUT_LANDMARKS, 256)
    with pytest.raises(ValueError, match="coincide"):
        align.similarity_transform(np.ones((5, 2)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="same points"):
        align.similarity_transform(np.zeros((5, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="zoom"):
        align.template(256, 0.0)
    transform = align.alignment(ASTRONAUT_LANDMARKS, 256)
    with pytest.raises(ValueError, match="crop has shape"):
        align.paste_back(np.zeros((128, 128, 3), np.float32), transform, image)
    with pytest.raises(ValueError, match="mask"):
        align.paste_back(np.zeros((256, 256, 3), np.float32), transform, image, mask=np.full((256, 256), 2.0))
