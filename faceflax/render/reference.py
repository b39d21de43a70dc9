"""A slow, obviously correct NumPy rasterizer: the oracle for :func:`faceflax.render.rasterize`.

Same conventions as the fast one (pixel centres, inclusive edges, nearest depth wins, ties to the
lower triangle id, triangles behind the camera dropped), computed in float64 one triangle at a
time over its bounding box.
"""

import numpy as np


def rasterize_reference(clip_verts: np.ndarray, faces: np.ndarray, size: tuple[int, int]):
    """``clip_verts [B,V,4]``, ``faces [F,3]`` -> ``(tri_id [B,H,W], bary [B,H,W,3], depth [B,H,W])``.

    Barycentrics are perspective-correct; empty pixels have id -1, zero bary and depth 1.
    """
    height, width = size
    batch = clip_verts.shape[0]
    tri_id = np.full((batch, height, width), -1, np.int64)
    bary = np.zeros((batch, height, width, 3))
    depth = np.ones((batch, height, width))
    zbuf = np.full((batch, height, width), np.inf)
    for b in range(batch):
        for t, face in enumerate(faces):
            clip = clip_verts[b, face].astype(np.float64)
            w = clip[:, 3]
            if np.any(w <= 0):
                continue
            x = (clip[:, 0] / w + 1) * width / 2 - 0.5
            y = (clip[:, 1] / w + 1) * height / 2 - 0.5
            z = clip[:, 2] / w
            area = (x[1] - x[0]) * (y[2] - y[0]) - (x[2] - x[0]) * (y[1] - y[0])
            if area == 0:
                continue
            x0, x1 = (
                max(int(np.ceil(x.min())), 0),
                min(int(np.floor(x.max())), width - 1),
            )
            y0, y1 = (
                max(int(np.ceil(y.min())), 0),
                min(int(np.floor(y.max())), height - 1),
            )
            if x0 > x1 or y0 > y1:
                continue
            py, px = np.mgrid[y0 : y1 + 1, x0 : x1 + 1].astype(np.float64)
            screen = (
                np.stack(
                    [
                        (x[1] - px) * (y[2] - py) - (x[2] - px) * (y[1] - py),
                        (x[2] - px) * (y[0] - py) - (x[0] - px) * (y[2] - py),
                        (x[0] - px) * (y[1] - py) - (x[1] - px) * (y[0] - py),
                    ],
                    -1,
                )
                / area
            )
            frag_z = screen @ z
            win = np.all(screen >= 0, -1) & (frag_z >= -1) & (frag_z <= 1)
            win &= frag_z < zbuf[b, y0 : y1 + 1, x0 : x1 + 1]
            perspective = screen / w
            perspective /= perspective.sum(-1, keepdims=True)
            rows, cols = np.nonzero(win)
            rows_img, cols_img = rows + y0, cols + x0
            zbuf[b, rows_img, cols_img] = frag_z[rows, cols]
            tri_id[b, rows_img, cols_img] = t
            bary[b, rows_img, cols_img] = perspective[rows, cols]
            depth[b, rows_img, cols_img] = frag_z[rows, cols]
    return tri_id, bary, depth
