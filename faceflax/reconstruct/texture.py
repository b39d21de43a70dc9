"""The face-region mask of a photo and the completion of an incomplete UV texture.

**Face region (thesis sec. 4.3.1).** The thesis samples UV_gt only inside a face mask from a face
segmentation network, eroded so that background and the piled-up vertices of the face's edge stay
out. faceflax has no segmentation network at this stage, so the mask is the landmark polygon: the
jaw (iBUG 0-16) closed over the brows (26..17) lifted by ``forehead`` times the chin-to-nose-bridge
vector (8 -> 27), which takes in the lower forehead. :func:`face_region_mask` draws it and
:func:`sampling_mask` intersects it with the rendered face (its holes, the eyes and mouth of an ICT
mesh, filled: they are not edges) and erodes both by ``DEFAULT_EROSION`` times the face's width, so
neither background beyond the landmarks nor the grazing texels at the mesh's silhouette get into UV_gt.

**Completion (thesis sec. 4.3.2.1, Fig. 4.4; MvInvert sec. 3.1).** With ``T_UV`` the sampled texture,
``V`` its visible texels and ``T_M`` the model texture (the fitted 3DMM texture, "T_PCA"/"UV_bfm", or
none), :func:`complete_texture` runs three gradient-domain blends (:mod:`faceflax.solvers.poisson_image`):

1. inpaint every missing texel (``~V``) with the gradients of ``T_M`` and Dirichlet values from the
   visible texels (MvInvert: "inpainting for T_UV by using the corresponding areas in T_PCA via Poisson
   blending"; thesis eq. 4.6); without a model texture the guidance is zero: a harmonic fill;
2. symmetric flip blending (thesis Fig. 4.4h): missing texels whose mirror is visible get the mirrored
   photo texture, blended against step 1's values around them;
3. the texels missing on both sides are inpainted again as in step 1, now against the mirrored texels
   too, so no seam shows between steps 1 and 2.

Visible texels are never changed (the blends only solve for the masked texels), and every texel of the
texture has a value afterwards, including those outside the UV layout (the fill bleeds past the
layout's edges, so bilinear lookups at UV seams never read black). Step 2 needs a left-right symmetric
UV layout (ICT-FaceKit's is, exactly); ``symmetric=False`` skips it.
"""

from typing import NamedTuple

import cv2
import jax
import jax.numpy as jnp
import numpy as np

from faceflax.solvers.poisson_image import SolveInfo, poisson_blend, symmetric_fill

DEFAULT_FOREHEAD = 0.25
DEFAULT_EROSION = 0.04
JAW = list(range(17))
BROWS_REVERSED = list(range(26, 16, -1))
CHIN, NOSE_BRIDGE = 8, 27


def face_region_mask(landmarks: np.ndarray, image_size: tuple[int, int], forehead: float = DEFAULT_FOREHEAD):
    """Bool ``[H, W]`` mask of the face inside ``landmarks [68, 2]`` (pixels), forehead included.

    The jaw line closed over the brows, which are lifted by ``forehead`` x (nose bridge - chin).
    """
    landmarks = np.asarray(landmarks, np.float64)
    lift = forehead * (landmarks[NOSE_BRIDGE] - landmarks[CHIN])
    polygon = np.concatenate([landmarks[JAW], landmarks[BROWS_REVERSED] + lift])
    mask = np.zeros(image_size, np.uint8)
    # 4 fractional bits: the polygon keeps sub-pixel landmark positions.
    cv2.fillPoly(mask, [np.round((polygon + 0.5) * 16 - 0.5).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    return mask.astype(bool)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask [H, W]`` bool with every region of False that does not touch the border set True."""
    _, labels = cv2.connectedComponents((~np.asarray(mask, bool)).astype(np.uint8), connectivity=4)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    outside = np.isin(labels, border[border > 0])
    return ~outside


def sampling_mask(region: np.ndarray, covered: np.ndarray, radius: int) -> np.ndarray:
    """Pixels UV_gt may sample: ``region`` and the hole-filled ``covered``, eroded by ``radius`` pixels."""
    inside = (np.asarray(region, bool) & fill_holes(covered)).astype(np.uint8)
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    return cv2.erode(inside, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)


def is_symmetric_layout(layout: np.ndarray, min_agreement: float = 0.98) -> bool:
    """Whether a UV layout mask ``[H, W]`` is (nearly) its own mirror image, as step 2 needs."""
    layout = np.asarray(layout, bool)
    return bool(np.sum(layout & layout[:, ::-1]) >= min_agreement * max(np.sum(layout), 1))


class CompletedTexture(NamedTuple):
    texture: jax.Array  # [Ht, Wt, C] every texel filled
    mirrored: jax.Array  # [Ht, Wt] bool: texels filled from their mirror (step 2)
    info: tuple[SolveInfo, ...]  # one per blend, per channel


def complete_texture(
    sampled: jax.Array,
    visible: jax.Array,
    model_texture: jax.Array | None = None,
    *,
    symmetric: bool = True,
    tol: float = 1e-4,
) -> CompletedTexture:
    """Fill the missing texels of ``sampled [Ht, Wt, C]`` (``visible [Ht, Wt]`` bool) (module docstring).

    ``model_texture [Ht, Wt, C]``: the model's texture in the same layout (guidance of steps 1 and 3),
    or None for a harmonic fill. Jit-able; visible texels come back bit-identical.
    """
    sampled = jnp.asarray(sampled, jnp.float32)
    visible = jnp.asarray(visible, bool)
    guide = jnp.zeros_like(sampled) if model_texture is None else jnp.asarray(model_texture, jnp.float32)
    if guide.shape != sampled.shape or visible.shape != sampled.shape[:2]:
        raise ValueError(
            f"sampled {sampled.shape}, visible {visible.shape} and model texture {guide.shape} must share the UV size"
        )
    filled, first = poisson_blend(guide, sampled, ~visible, tol=tol)
    if not symmetric:
        return CompletedTexture(filled, jnp.zeros_like(visible), (first,))
    mirrored_texture, known, mirror = symmetric_fill(filled, visible, tol=tol)
    completed, last = poisson_blend(guide, mirrored_texture, ~known, tol=tol)
    return CompletedTexture(completed, known & ~visible, (first, mirror, last))
