"""Renders of a reconstructed face: at the photo's pose, and MvInvert's frontal, left and right views.

MvInvert sec. 3.2 renders the coarse texture "under three different poses such as frontal, left, and
right" (the angle is not given; faceflax uses 45 degrees of yaw, as its mesh-fusion benchmark). Novel
views turn the fitted shape about its own centre (the middle of its bounding box) in front of
Deep3DFaceRecon's camera moved back to ``VIEW_DISTANCE``, so a whole ICT head front fits the frame.
Positive yaw (the "left" view) turns the nose toward the image's right, so the face's right cheek comes
into view; "right" is the mirror turn.
"""

import jax
import jax.numpy as jnp
import numpy as np

from faceflax.geometry.camera import PerspectiveCamera
from faceflax.geometry.rotation import euler_to_matrix
from faceflax.render.uv import render_uv_texture

VIEW_YAWS = {"frontal": 0.0, "left": 45.0, "right": -45.0}
VIEW_DISTANCE = 12.0
VIEW_SIZE = 256
BACKGROUND = 0.5


def view_camera(size: int = VIEW_SIZE) -> PerspectiveCamera:
    """Deep3DFaceRecon's camera at ``size`` pixels, ``VIEW_DISTANCE`` from the face."""
    return PerspectiveCamera.for_image_size((size, size)).replace(distance=VIEW_DISTANCE)


def view_poses(verts: jax.Array, yaws_deg) -> jax.Array:
    """``verts [V,3]`` (model space) turned by each yaw about their box centre -> ``[K,V,3]``."""
    verts = jnp.asarray(verts, jnp.float32)
    centred = verts - 0.5 * (verts.min(0) + verts.max(0))
    yaws = jnp.radians(jnp.asarray(yaws_deg, jnp.float32))
    angles = jnp.stack([jnp.zeros_like(yaws), yaws, jnp.zeros_like(yaws)], -1)
    return jnp.einsum("kij,vj->kvi", euler_to_matrix(angles), centred, precision=jax.lax.Precision.HIGHEST)


def render_textured(texture, verts, faces, uvs, uv_faces, camera, background: float | None = None):
    """``texture [Ht,Wt,3]`` on posed ``verts [K,V,3]`` -> (images ``[K,H,W,3]``, coverage ``[K,H,W]``).

    ``background``: a grey level for uncovered pixels (None: 0).
    """
    batch = verts.shape[0]
    tex = jnp.broadcast_to(texture, (batch, *texture.shape))
    images, covered = render_uv_texture(tex, verts, faces, uvs, uv_faces, camera)
    if background is not None:
        images = jnp.where(covered[..., None], images, background)
    return images, covered


def view_landmarks(posed: np.ndarray, landmark_ids: np.ndarray, camera: PerspectiveCamera) -> np.ndarray:
    """Pixel landmarks ``[K,68,2]`` of posed views ``[K,V,3]`` (for identity descriptors of renders)."""
    pix, _ = camera.project(jnp.asarray(posed)[:, jnp.asarray(landmark_ids)])
    return np.asarray(pix, np.float32)
