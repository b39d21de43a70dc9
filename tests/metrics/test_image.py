"""SSIM and PSNR against scikit-image (Wang et al. 2004; thesis Tables 4.2, 5.1)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skimage.data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from faceflax.metrics.image import psnr, ssim, ssim_map


def _skimage_ssim(a, b, data_range=1.0, full=False):
    return structural_similarity(
        a,
        b,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        channel_axis=-1,
        data_range=data_range,
        full=full,
    )


def _degraded(image, rng):
    """A natural image plus noise and a row shift: SSIM around 0.5, PSNR around 25 dB."""
    noisy = image + rng.normal(0.0, 0.05, image.shape)
    return np.clip(np.roll(noisy, 1, axis=0), 0.0, 1.0)


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee"])
def test_natural_images_match_skimage(name):
    a = getattr(skimage.data, name)().astype(np.float64) / 255.0
    b = _degraded(a, np.random.default_rng(0))
    x, y = jnp.asarray(a[None], jnp.float32), jnp.asarray(b[None], jnp.float32)
    assert float(ssim(x, y)[0]) == pytest.approx(_skimage_ssim(a, b), abs=1e-5)  # measured <= 1.6e-7
    assert float(psnr(x, y)[0]) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=1.0), abs=1e-4)


@pytest.mark.parametrize("data_range", [1.0, 255.0])
def test_random_batch_matches_skimage_per_image(data_range):
    rng = np.random.default_rng(1)
    a = rng.uniform(0, data_range, (4, 24, 31, 3))
    b = np.clip(
        a + rng.normal(0, 0.2 * data_range, a.shape) * np.array([0.1, 0.5, 1, 2])[:, None, None, None], 0, data_range
    )
    x, y = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
    ours_ssim = jax.jit(ssim)(x, y, data_range)
    ours_psnr = jax.jit(psnr)(x, y, data_range)
    for i in range(4):
        assert float(ours_ssim[i]) == pytest.approx(_skimage_ssim(a[i], b[i], data_range), abs=1e-5)
        assert float(ours_psnr[i]) == pytest.approx(
            peak_signal_noise_ratio(a[i], b[i], data_range=data_range), abs=1e-4
        )
    assert np.ptp(np.asarray(ours_ssim)) > 0.3  # the four images really differ


def test_maps_match_skimage_full_map_and_its_crop():
    a = skimage.data.chelsea()[100:164, 150:230].astype(np.float64) / 255.0
    b = _degraded(a, np.random.default_rng(2))
    _, full = _skimage_ssim(a, b, full=True)
    x, y = jnp.asarray(a[None], jnp.float32), jnp.asarray(b[None], jnp.float32)
    same = np.asarray(ssim_map(x, y, padding="same")[0])
    valid = np.asarray(ssim_map(x, y)[0])
    assert same.shape == a.shape and valid.shape == (54, 70, 3)
    np.testing.assert_allclose(same, full, atol=1e-4)  # float32 map entries; measured max 2.1e-5
    np.testing.assert_allclose(valid, full[5:-5, 5:-5], atol=1e-4)
    assert abs(valid.mean() - full[5:-5, 5:-5].mean()) < 1e-6


def test_masked_metrics_average_only_the_mask():
    rng = np.random.default_rng(3)
    a = rng.uniform(size=(2, 32, 32, 3))
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)
    mask = np.zeros((2, 32, 32, 1))
    mask[:, 8:24, 4:20] = 1.0
    x, y, m = (jnp.asarray(v, jnp.float32) for v in (a, b, mask))
    for i in range(2):
        _, full = _skimage_ssim(a[i], b[i], full=True)
        inside = np.broadcast_to(mask[i], a[i].shape)[5:-5, 5:-5] > 0
        assert float(ssim(x, y, mask=m)[i]) == pytest.approx(full[5:-5, 5:-5][inside].mean(), abs=1e-5)
        selected = np.broadcast_to(mask[i], a[i].shape) > 0
        expected_psnr = peak_signal_noise_ratio(a[i][selected], b[i][selected], data_range=1.0)
        assert float(psnr(x, y, mask=m)[i]) == pytest.approx(expected_psnr, abs=1e-4)
    ones = jnp.ones((2, 32, 32, 1))
    np.testing.assert_allclose(ssim(x, y, mask=ones), ssim(x, y), atol=1e-6)
    np.testing.assert_allclose(psnr(x, y, mask=ones), psnr(x, y), atol=1e-4)


def test_identical_images_and_vmap():
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.uniform(size=(3, 16, 16, 2)), jnp.float32)
    np.testing.assert_allclose(ssim(x, x), 1.0, atol=1e-6)
    assert np.all(np.isinf(np.asarray(psnr(x, x))))
    y = jnp.clip(x + rng.normal(0, 0.1, x.shape).astype(np.float32), 0, 1)
    per_image = jax.vmap(lambda a, b: ssim(a[None], b[None])[0])(x, y)
    np.testing.assert_allclose(per_image, ssim(x, y), rtol=1e-6)


def test_bad_inputs_raise_value_error():
    x = jnp.zeros((1, 16, 16, 3))
    with pytest.raises(ValueError, match="same shape"):
        ssim(x, jnp.zeros((1, 16, 15, 3)))
    with pytest.raises(ValueError, match=r"x\[None\]"):
        psnr(x[0], x[0])
    with pytest.raises(ValueError, match="11x11"):
        ssim(jnp.zeros((1, 10, 16, 3)), jnp.zeros((1, 10, 16, 3)))
    with pytest.raises(ValueError, match="padding"):
        ssim_map(x, x, padding="reflect")
    with pytest.raises(ValueError, match=r"mask\[..., None\]"):
        psnr(x, x, mask=jnp.ones((1, 16, 16)))
