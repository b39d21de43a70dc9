"""UV completion (thesis sec. 4.3.2.1, MvInvert sec. 3.1), the face-region mask and the face square."""

import numpy as np
import pytest
from skimage import data, transform

from faceflax.reconstruct import texture
from faceflax.reconstruct.crop import face_crop

SIZE = 64


def smooth_texture(seed=0, size=SIZE):
    """A smooth RGB texture in about [0.2, 0.8] (a resized natural image)."""
    image = transform.resize(data.chelsea()[40:240, 100:300] / 255.0, (size, size), anti_aliasing=True)
    return (0.2 + 0.6 * image + 0.01 * seed).astype(np.float32)


def blob_mask(size=SIZE, seed=0):
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:size, :size]
    mask = np.zeros((size, size), bool)
    for _ in range(4):
        r, c, radius = rng.uniform(10, size - 10), rng.uniform(5, size / 2), rng.uniform(6, 12)
        mask |= (rows - r) ** 2 + (cols - c) ** 2 < radius**2
    return mask


@pytest.mark.parametrize("guided", [False, True])
def test_visible_texels_are_kept_bit_for_bit_and_no_texel_is_left_empty(guided):
    truth = smooth_texture()
    visible = blob_mask()
    sampled = np.where(visible[..., None], truth, 0.0).astype(np.float32)
    guide = smooth_texture(seed=3) if guided else None
    done = texture.complete_texture(sampled, visible, guide)
    out = np.asarray(done.texture)
    np.testing.assert_array_equal(out[visible], sampled[visible])
    assert np.isfinite(out).all()
    # No holes: every missing texel moved away from the 0 it was sampled as, toward the visible colours.
    assert out[~visible].min() > 0.1
    for info in done.info:
        assert np.asarray(info.converged).all()


def test_a_model_texture_off_by_a_constant_is_inpainted_exactly():
    """Inpainting with the model's gradients (MvInvert sec. 3.1): if the model texture equals the true
    texture up to a colour offset, the missing texels come back exactly (the offset is removed)."""
    truth = smooth_texture()
    visible = blob_mask(seed=1)
    sampled = np.where(visible[..., None], truth, 0.0).astype(np.float32)
    model_texture = truth + np.array([0.1, -0.05, 0.2], np.float32)
    out = np.asarray(texture.complete_texture(sampled, visible, model_texture, symmetric=False, tol=1e-6).texture)
    np.testing.assert_allclose(out, truth, atol=2e-4)


def test_symmetric_flip_blending_restores_the_hidden_half_of_a_symmetric_texture():
    half = smooth_texture()[:, : SIZE // 2]
    truth = np.concatenate([half, half[:, ::-1]], 1)
    visible = np.zeros((SIZE, SIZE), bool)
    visible[8:56, 4:36] = True  # one cheek and a little over the middle
    sampled = np.where(visible[..., None], truth, 0.0).astype(np.float32)
    done = texture.complete_texture(sampled, visible, tol=1e-6)
    out, mirrored = np.asarray(done.texture), np.asarray(done.mirrored)
    expected_mirror = np.zeros_like(visible)
    expected_mirror[8:56, SIZE - 36 : SIZE - 4] = True
    np.testing.assert_array_equal(mirrored, expected_mirror & ~visible)
    np.testing.assert_allclose(out[mirrored], truth[mirrored], atol=2e-4)
    without = np.asarray(texture.complete_texture(sampled, visible, symmetric=False).texture)
    assert np.abs(without[mirrored] - truth[mirrored]).mean() > 10 * np.abs(out[mirrored] - truth[mirrored]).mean()


def test_completion_refuses_mismatched_sizes():
    with pytest.raises(ValueError, match="UV size"):
        texture.complete_texture(np.zeros((8, 8, 3)), np.zeros((8, 9), bool))


def test_symmetric_layout_check():
    layout = np.zeros((16, 16), bool)
    layout[2:14, 3:13] = True
    assert texture.is_symmetric_layout(layout)
    layout[2:14, 13:15] = True
    assert not texture.is_symmetric_layout(layout)


def landmarks_of_an_oval(cx=100.0, cy=120.0, width=80.0, height=100.0):
    """68 iBUG-ordered points on a stylised face: jaw on an ellipse, brows above the eyes, a nose line."""
    points = np.zeros((68, 2))
    angles = np.linspace(np.pi, 0, 17)
    points[:17] = np.stack([cx + width / 2 * np.cos(angles), cy + height / 2 * np.sin(angles)], 1)
    points[17:27] = np.stack([np.linspace(cx - 30, cx + 30, 10), np.full(10, cy - 30.0)], 1)
    points[27:36] = np.stack([np.full(9, cx), np.linspace(cy - 25, cy + 5, 9)], 1)
    points[36:68] = np.stack([np.linspace(cx - 25, cx + 25, 32), np.full(32, cy + 10.0)], 1)
    return points.astype(np.float32)


def test_face_region_mask_follows_the_jaw_and_takes_in_the_lower_forehead():
    marks = landmarks_of_an_oval()
    mask = texture.face_region_mask(marks, (256, 256), forehead=0.25)
    assert mask[120, 100] and mask[160, 100]  # face centre, above the chin
    assert not mask[120, 30] and not mask[175, 100]  # beside the jaw, below the chin
    lift = 0.25 * (marks[27, 1] - marks[8, 1])  # negative: up
    assert mask[round(marks[17:27, 1].mean() + 0.8 * lift), 100]
    assert not mask[round(marks[17:27, 1].mean() + 1.3 * lift), 100]


def test_sampling_mask_erodes_the_outline_but_not_around_holes():
    covered = np.zeros((40, 40), bool)
    covered[5:35, 5:35] = True
    covered[15:20, 15:25] = False  # an eye opening
    region = np.ones((40, 40), bool)
    region[:, 30:] = False  # the landmark polygon ends before the mesh does
    mask = texture.sampling_mask(region, covered, 2)
    expected = np.zeros((40, 40), bool)
    expected[7:33, 7:28] = True
    np.testing.assert_array_equal(mask, expected)
    # Holes are filled; background reaching the border (here through a notch) is not.
    covered[25:40, 10:12] = False
    filled = texture.fill_holes(covered)
    assert not filled[30, 11] and filled[16, 16]


def test_face_square_round_trip_and_resampling():
    marks = landmarks_of_an_oval()
    crop = face_crop(marks, size=128, context=2.0)
    assert crop.side == 160  # 2 x the landmarks' 80-px box
    np.testing.assert_allclose(crop.to_photo(crop.to_crop(marks)), marks, atol=1e-4)
    photo = np.zeros((300, 260, 3), np.float32)
    photo[119:122, 99:102] = 1.0  # a 3x3 dot at the face centre
    square = crop.crop(photo)
    assert square.shape == (128, 128, 3)
    row, col = np.unravel_index(np.argmax(square[..., 0]), square.shape[:2])
    np.testing.assert_allclose(crop.to_photo(np.array([col, row])), [100, 120], atol=1.0)
    # Pasting with zero alpha keeps the photo; full alpha brings the square back at the same place.
    assert np.array_equal(crop.paste(photo, square, np.zeros(photo.shape[:2], np.float32)), photo)
    alpha = crop.coverage_in_photo(np.ones((128, 128), np.float32), photo.shape[:2])
    back = crop.paste(photo, square, alpha)
    assert back[120, 100, 0] > 0.3 and back[60, 100, 0] < 1e-6


def test_a_face_square_larger_than_the_photo_is_padded_black():
    marks = landmarks_of_an_oval(cx=40, cy=40, width=60, height=60)
    crop = face_crop(marks, size=64, context=3.0)
    square = crop.crop(np.ones((80, 80, 3), np.float32))
    assert square.shape == (64, 64, 3)
    assert square[0, 0].max() == 0 and square[32, 32].min() == 1
