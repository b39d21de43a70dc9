"""Wavefront OBJ reading into numpy arrays (positions, UVs, triangulated faces).

Only geometry is read: ``v``, ``vt`` and ``f`` statements. Normals (``vn``), comments,
grouping and material statements (``o g s usemtl mtllib`` ...) are skipped. Polygons are
fan-triangulated, ``(p0, p_k, p_k+1)``, so a quad ``a b c d`` becomes ``a b c`` and
``a c d`` with its winding kept. Indices come back 0-based; negative (relative) indices are
resolved against the elements defined before the face line, as the OBJ specification says.
UVs come back raw, as stored (OBJ convention, v up); the importers in
:mod:`faceflax.geometry.morphable` flip them to image convention.

Parsing is vectorised: one pass over the lines to sort them by statement, then one numpy
conversion per element kind (a 26k-vertex ICT-FaceKit mesh reads in about 0.15 s).
"""

import os
import re
from typing import NamedTuple

import numpy as np

# Statements of the OBJ format that carry no triangle-mesh geometry: accepted and skipped.
_SKIPPED = frozenset(
    b"vn vp o g s mg usemtl mtllib usemap maplib l p cstype deg bmat step curv curv2 surf "
    b"parm trim hole scrv sp end con bevel c_interp d_interp lod shadow_obj trace_obj "
    b"ctech stech".split()
)


class ObjMesh(NamedTuple):
    """A triangulated OBJ mesh (numpy arrays).

    Attributes:
      positions: ``[V, 3]`` float32 vertex positions, as stored.
      uvs: ``[T, 2]`` float32 texture coordinates, as stored (``[0, 2]`` without ``vt``).
      faces: ``[F, 3]`` int32 0-based vertex indices of the triangles.
      uv_faces: ``[F, 3]`` int32 0-based indices into ``uvs`` (rows of -1 for triangles whose
        polygon has no texture references), or None when no face has any.
      face_source: ``[F]`` int32 index of the OBJ polygon (``f`` statement, counted from 0)
        each triangle came from.
    """

    positions: np.ndarray
    uvs: np.ndarray
    faces: np.ndarray
    uv_faces: np.ndarray | None
    face_source: np.ndarray


def _error(path: os.PathLike | str, line: int, message: str) -> ValueError:
    return ValueError(f"{os.fspath(path)}, line {line}: {message}")


def _floats(path, rows: list[tuple[int, bytes]], width: int, kind: str) -> np.ndarray:
    """``(line number, payload)`` rows -> ``[N, width]`` float32.

    Extra values (``v`` with w or vertex colours, ``vt`` with w) are dropped; a ``vt`` with
    only u gets v = 0, the OBJ default.
    """
    if not rows:
        return np.zeros((0, width), np.float32)
    payloads = [payload for _, payload in rows]
    try:  # fast path: numpy's C parser, when every row has at least `width` numbers
        columns = range(width)
        out = np.loadtxt(payloads, np.float32, comments="#", usecols=columns, ndmin=2)
        if len(out) == len(rows):
            return out
    except ValueError:
        pass  # locate the bad row below
    out = np.zeros((len(rows), width), np.float32)
    minimum = 1 if kind == "vt" else width
    for i, (line, payload) in enumerate(rows):
        row = payload.split(b"#", 1)[0].split()
        if len(row) < minimum:
            message = f"'{kind}' needs {minimum} numbers, got {len(row)}"
            raise _error(path, line, message)
        try:
            values = [float(t) for t in row[:width]]
        except ValueError:
            message = f"'{kind}' has a non-numeric value in {row}"
            raise _error(path, line, message) from None
        out[i, : len(values)] = values
    return out


def _parse_polygon(path, line: int, refs: list[bytes]) -> tuple[list, list | None]:
    """``[b"3/7/1", ...]`` -> (vertex indices, texture indices or None), as written."""
    verts, texs = [], []
    for ref in refs:
        parts = ref.split(b"/")
        try:
            if len(parts) > 3:
                raise ValueError
            verts.append(int(parts[0]))
            if len(parts) > 1 and parts[1]:
                texs.append(int(parts[1]))
        except ValueError:
            text = ref.decode(errors="replace")
            raise _error(path, line, f"malformed face vertex {text!r}") from None
    if texs and len(texs) != len(verts):
        raise _error(path, line, "face mixes vertices with and without texture indices")
    return verts, (texs or None)


# The uniform reference forms, `v`, `v/vt`, `v/vt/vn` and `v//vn`, as (regex, width, has vt).
_INT = rb"-?[0-9]+"
_FORMS = [
    (re.compile(rb"(?:%s )*%s" % (form, form)), width, has_uv)
    for form, width, has_uv in [
        (_INT, 1, False),
        (_INT + b"/" + _INT, 2, True),
        (_INT + b"/" + _INT + b"/" + _INT, 3, True),
        (_INT + b"//" + _INT, 2, False),
    ]
]


def _face_indices(path, lines: list[int], polygons: list[list[bytes]]):
    """All polygon references -> (vertex indices [R], texture indices [R] or None,
    polygon has texture indices [P]); indices as written (1-based or negative)."""
    joined = b" ".join(b" ".join(refs) for refs in polygons)
    for pattern, width, has_uv in _FORMS:
        if joined and pattern.fullmatch(joined):  # uniform file: one integer conversion
            table = np.array(joined.replace(b"/", b" ").split(), dtype=np.int64)
            table = table.reshape(-1, width)
            texs = table[:, 1] if has_uv else None
            return table[:, 0], texs, np.full(len(polygons), has_uv)
    verts, texs, has_uv = [], [], []
    for line, refs in zip(lines, polygons):
        v, t = _parse_polygon(path, line, refs)
        verts += v
        texs += t if t is not None else [0] * len(v)
        has_uv.append(t is not None)
    has_uv = np.asarray(has_uv, bool)
    texs = np.asarray(texs, np.int64) if has_uv.any() else None
    return np.asarray(verts, np.int64), texs, has_uv


def _resolve(path, lines, idx, defined, total: int, kind: str) -> np.ndarray:
    """OBJ indices (1-based, or negative relative to the ``defined`` so far) -> 0-based."""
    out = np.where(idx < 0, defined + idx, idx - 1)
    bad = (idx == 0) | (out < 0) | (out >= total)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        message = f"{kind} index {int(idx[first])} is out of range (1..{total})"
        raise _error(path, int(lines[first]), message)
    return out


def _statements(path, data: bytes) -> tuple[list[bytes], np.ndarray, ...]:
    """Split ``data`` into lines; find the ``v``, ``vt`` and ``f`` lines (line = index + 1).

    Lines are sorted by their first three bytes in one vectorised pass; only the few other
    statements are looked at in Python, to reject unknown ones.

    Returns:
      (lines, is_v [L], is_vt [L], is_f [L]).
    """
    lines = data.split(b"\n")
    heads = np.array([line.lstrip()[:3] for line in lines], dtype="S3")
    c = heads.view(np.uint8).reshape(len(lines), 3)
    # Is the byte after a 1- or 2-letter key a space or a tab?
    blank = (c[:, 1:] == ord(" ")) | (c[:, 1:] == ord("\t"))
    is_v = (c[:, 0] == ord("v")) & blank[:, 0]
    is_vt = (c[:, 0] == ord("v")) & (c[:, 1] == ord("t")) & blank[:, 1]
    is_f = (c[:, 0] == ord("f")) & blank[:, 0]
    known = is_v | is_vt | is_f | (c[:, 0] == 0) | (c[:, 0] == ord("#"))
    known |= (c[:, 0] == ord("v")) & (c[:, 1] == ord("n")) & blank[:, 1]
    for i in np.flatnonzero(~known):
        key = lines[i].split(None, 1)[0]
        if key in (b"v", b"vt", b"f"):
            raise _error(path, i + 1, f"'{key.decode()}' statement without values")
        if key not in _SKIPPED:
            text = key.decode(errors="replace")
            raise _error(path, i + 1, f"unknown OBJ statement {text!r}")
    return lines, is_v, is_vt, is_f


def read_obj(path: os.PathLike | str) -> ObjMesh:
    """Read a Wavefront OBJ file into triangulated numpy arrays.

    Supports ``f v``, ``f v/vt``, ``f v/vt/vn`` and ``f v//vn`` references, negative
    (relative) indices and polygons of any size (fan triangulation, quads -> 2 triangles).

    Args:
      path: the ``.obj`` file.

    Returns:
      An :class:`ObjMesh`.

    Raises:
      ValueError: on malformed input, naming the file and the 1-based line number.
    """
    with open(path, "rb") as f:
        lines, is_v, is_vt, is_f = _statements(path, f.read())
    v_idx, vt_idx, f_idx = map(np.flatnonzero, (is_v, is_vt, is_f))
    positions = _floats(path, [(i + 1, lines[i].lstrip()[1:]) for i in v_idx], 3, "v")
    uvs = _floats(path, [(i + 1, lines[i].lstrip()[2:]) for i in vt_idx], 2, "vt")
    polygons = [lines[i].split(b"#", 1)[0].split()[1:] for i in f_idx]
    f_lines = (f_idx + 1).tolist()
    for line, refs in zip(f_lines, polygons):
        if len(refs) < 3:
            raise _error(path, line, f"face needs at least 3 vertices, got {len(refs)}")

    sizes = np.asarray([len(refs) for refs in polygons], np.int64)
    verts, texs, has_uv = _face_indices(path, f_lines, polygons)
    ref_lines = np.repeat(f_idx + 1, sizes)
    # Negative indices count back from the elements defined before the face line.
    nv_before = np.repeat(np.cumsum(is_v)[f_idx], sizes)
    verts = _resolve(path, ref_lines, verts, nv_before, len(positions), "v")
    if texs is not None:
        uv_ref = np.repeat(has_uv, sizes)
        nvt_before = np.repeat(np.cumsum(is_vt)[f_idx], sizes)[uv_ref]
        uv_lines, uv_idx = ref_lines[uv_ref], texs[uv_ref]
        texs[uv_ref] = _resolve(path, uv_lines, uv_idx, nvt_before, len(uvs), "vt")
        texs[~uv_ref] = -1

    # Fan triangulation: polygon p of size n at reference offset s gives the triangles
    # (s, s + k + 1, s + k + 2) for k = 0 .. n - 3.
    n_tris = sizes - 2
    source = np.repeat(np.arange(len(polygons)), n_tris)
    k = np.arange(len(source)) - (np.cumsum(n_tris) - n_tris)[source]
    start = (np.cumsum(sizes) - sizes)[source]
    corners = np.stack([start, start + k + 1, start + k + 2], axis=1)
    faces = verts[corners].astype(np.int32).reshape(-1, 3)
    uv_faces = None if texs is None else texs[corners].astype(np.int32).reshape(-1, 3)
    return ObjMesh(positions, uvs, faces, uv_faces, source.astype(np.int32))


def read_positions(path: os.PathLike | str) -> np.ndarray:
    """Only the vertex positions of an OBJ file: ``[V, 3]`` float32.

    For identity / blendshape OBJs that share a reference mesh's topology (ICT-FaceKit), where
    only the ``v`` lines differ: faces and UVs are not parsed.

    Raises:
      ValueError: on a malformed ``v`` line or an unknown statement, naming the file and line.
    """
    with open(path, "rb") as f:
        lines, is_v, _, _ = _statements(path, f.read())
    rows = [(i + 1, lines[i].lstrip()[1:]) for i in np.flatnonzero(is_v)]
    return _floats(path, rows, 3, "v")
