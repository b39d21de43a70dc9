"""Occlusion synthesis (faceflax.data.occlusion): eq. 5.1 / 5.2 masks, changed pixels, anchoring, seeds."""

import numpy as np
import pytest

from faceflax.data import occlusion, segmentation
from faceflax.data.images import default_photo
from tests.data.test_align import ASTRONAUT_LANDMARKS

LANDMARKS = ASTRONAUT_LANDMARKS


@pytest.fixture(scope="module")
def photo():
    return default_photo("astronaut")


@pytest.fixture(scope="module")
def face(photo):
    return segmentation.face_mask(LANDMARKS, photo.shape[:2])


@pytest.mark.parametrize("seed", range(6))
def test_mask_is_exactly_the_changed_pixels_and_follows_eq_5_1_and_5_2(photo, face, seed):
    patches = [photo[::-1, ::-1].copy()]
    out = occlusion.synthesize_occlusion(seed, photo, LANDMARKS, face, num_occluders=(1, 3), patches=patches)
    m_o = out.occlusion_mask
    assert out.image.shape == photo.shape and out.image.dtype == np.float32
    assert set(np.unique(m_o)) <= {0.0, 1.0} and m_o.sum() > 0
    outside = m_o == 0
    assert np.array_equal(out.image[outside], photo[outside])  # bit-identical outside M_o
    changed = np.any(np.abs(out.image - photo) > 1e-4, -1)
    assert changed[~outside].mean() > 0.97, changed[~outside].mean()  # measured 1.0
    assert np.array_equal(out.face_mask, face * (1 - m_o))  # eq. 5.2: M_gt = M_f (1 - M_o)
    # eq. 5.1 with M_m the whole face and M_f the visible face: the occlusion inside the face.
    np.testing.assert_array_equal(occlusion.occlusion_from_masks(face, out.face_mask), face * m_o)


def test_sunglasses_cover_the_eye_landmarks(photo, face):
    for seed in range(5):
        out = occlusion.synthesize_occlusion(seed, photo, LANDMARKS, face, num_occluders=1, kinds=["sunglasses"])
        x, y = np.round(LANDMARKS[36:48]).astype(int).T
        assert np.all(out.occlusion_mask[y, x] == 1) and np.all(out.face_mask[y, x] == 0)
        nose, chin = np.round(LANDMARKS[[33, 8]]).astype(int)
        assert out.occlusion_mask[nose[1], nose[0]] == 0 and out.occlusion_mask[chin[1], chin[0]] == 0


def test_anchored_occluders(photo, face):
    rng = np.random.default_rng(0)
    mask = occlusion.occluder_mask(rng, "face_mask", LANDMARKS, photo.shape[:2])
    x, y = np.round(LANDMARKS[list(range(30, 36)) + list(range(48, 68))]).astype(int).T
    assert np.all(mask[y, x] == 1)  # nose tip, nostrils and the whole mouth
    eyes_x, eyes_y = np.round(LANDMARKS[36:48]).astype(int).T
    assert np.all(mask[eyes_y, eyes_x] == 0)
    for seed in range(4):
        hand = occlusion.occluder_mask(np.random.default_rng(seed), "hand", LANDMARKS, photo.shape[:2])
        assert (hand * face).sum() > 0 and (hand * (1 - face)).sum() > 0  # reaches in from beside the jaw
    for kind in occlusion.KINDS:
        mask = occlusion.occluder_mask(np.random.default_rng(3), kind, LANDMARKS, photo.shape[:2])
        assert mask.dtype == np.float32 and (mask * face).sum() > 0, kind


def test_textures(photo):
    rng = np.random.default_rng(0)
    for kind in occlusion.TEXTURES:
        texture = occlusion.occluder_texture(rng, kind, (40, 50), 3, patches=[photo])
        assert texture.shape == (40, 50, 3) and texture.dtype == np.float32, kind
        assert texture.min() >= 0 and texture.max() <= 1, kind
    with pytest.raises(ValueError, match="patches"):
        occlusion.occluder_texture(rng, "patch", (40, 50), 3)


def test_same_seed_same_sample_other_seed_differs(photo, face):
    def sample(key):
        return occlusion.synthesize_occlusion(key, photo, LANDMARKS, face, num_occluders=2)

    a, b, c = sample(7), sample(7), sample(8)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    assert not np.array_equal(a.occlusion_mask, c.occlusion_mask)
    from_generator = sample(np.random.default_rng(7))
    assert np.array_equal(from_generator.image, a.image)
    import jax

    k1, k2 = sample(jax.random.key(3)), sample(jax.random.key(3))
    assert np.array_equal(k1.image, k2.image) and np.array_equal(sample(jax.random.PRNGKey(3)).image, k1.image)


def test_default_face_mask_is_the_landmark_face(photo, face):
    out = occlusion.synthesize_occlusion(1, photo, LANDMARKS, None)
    assert np.array_equal(out.face_mask, face * (1 - out.occlusion_mask))


@pytest.mark.parametrize(
    "change, match",
    [
        ({"image": np.zeros((1, 64, 64, 3), np.float32)}, "not a batch"),
        ({"image": np.zeros((64, 64, 3), np.uint8)}, "float"),
        ({"landmarks": LANDMARKS[:5]}, "68"),
        ({"face_mask": np.ones((10, 10), np.float32)}, "face_mask"),
        ({"key": "seed"}, "key_or_rng"),
        ({"key": -1}, "key_or_rng"),
        ({"num_occluders": 0}, "num_occluders"),
        ({"kinds": ["scarf"]}, "kinds"),
        ({"textures": ["plaid"]}, "textures"),
    ],
)
def test_bad_inputs_raise(photo, change, match):
    arguments = {"key": 0, "image": photo, "landmarks": LANDMARKS, "face_mask": None} | change
    options = {k: arguments.pop(k) for k in ("num_occluders", "kinds", "textures") if k in arguments}
    with pytest.raises(ValueError, match=match):
        occlusion.synthesize_occlusion(
            arguments["key"], arguments["image"], arguments["landmarks"], arguments["face_mask"], **options
        )
