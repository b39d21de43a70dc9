"""OBJ reader: reference forms, polygons, relative indices, errors; trimesh and ICT checks."""

import numpy as np
import pytest
import trimesh

from faceflax.geometry.obj import read_obj, read_positions

SQUARE = "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv 0.5 1.5 0\n"
SQUARE_UV = "vt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\nvt 0.5 1\n"


def write(tmp_path, text: str, name: str = "mesh.obj"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_quads_and_polygons_are_fan_triangulated(tmp_path):
    # A quad, a pentagon and a triangle: fan from the first corner, winding kept.
    mesh = read_obj(write(tmp_path, SQUARE + "f 1 2 3 4\nf 1 2 3 5 4\nf 4 3 5\n"))
    expected = [[0, 1, 2], [0, 2, 3], [0, 1, 2], [0, 2, 4], [0, 4, 3], [3, 2, 4]]
    np.testing.assert_array_equal(mesh.faces, expected)
    np.testing.assert_array_equal(mesh.face_source, [0, 0, 1, 1, 1, 2])
    assert mesh.faces.dtype == np.int32 and mesh.face_source.dtype == np.int32
    assert mesh.positions.dtype == np.float32 and mesh.positions.shape == (5, 3)
    assert mesh.uvs.shape == (0, 2) and mesh.uv_faces is None


@pytest.mark.parametrize(
    "pattern, has_uv",
    [("{v}", False), ("{v}/{t}", True), ("{v}/{t}/{n}", True), ("{v}//{n}", False)],
)
def test_reference_forms(tmp_path, pattern, has_uv):
    # Texture indices deliberately differ from vertex indices (reversed order).
    polygons = [[1, 2, 3, 4], [4, 3, 5]]
    lines = [SQUARE, SQUARE_UV, "vn 0 0 1\n"]
    for polygon in polygons:
        refs = [pattern.format(v=v, t=6 - v, n=1) for v in polygon]
        lines.append("f " + " ".join(refs) + "\n")
    mesh = read_obj(write(tmp_path, "".join(lines)))
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [0, 2, 3], [3, 2, 4]])
    if has_uv:
        np.testing.assert_array_equal(mesh.uv_faces, 4 - mesh.faces)
        np.testing.assert_allclose(mesh.uvs[4], [0.5, 1.0])
    else:
        assert mesh.uv_faces is None


def test_negative_indices_count_back_from_the_face_line(tmp_path):
    text = (
        "v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 0 1\n"
        "f -3/-3 -2/-2 -1/-1\n"
        "v 0 0 1\nv 1 0 1\nv 0 1 1\nvt 0.5 0\n"
        "f -3/-1 -2/-2 -1/-3\n"
        "f 1/1 -1/4 5/-1\n"
    )
    mesh = read_obj(write(tmp_path, text))
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [3, 4, 5], [0, 5, 4]])
    np.testing.assert_array_equal(mesh.uv_faces, [[0, 1, 2], [3, 2, 1], [0, 3, 3]])


def test_ignored_statements_comments_crlf_and_tabs(tmp_path):
    text = (
        "# a comment\r\nmtllib m.mtl\r\no face\r\ng group\r\ns 1\r\nusemtl skin\r\n"
        "\r\nv\t0 0 0\r\n  v 1 0 0 1.0\r\nv 1 1 0 0.2 0.3 0.4\r\nvn 0 0 1\r\nvt 0.25\r\n"
        "vt 1 0 0\r\nvt 1 1\r\nf\t1/1/1 2/2/1 3/3/1\r\n"
    )
    mesh = read_obj(write(tmp_path, text))
    np.testing.assert_array_equal(mesh.positions, [[0, 0, 0], [1, 0, 0], [1, 1, 0]])
    # The u-only vt gets v = 0; w components are dropped.
    np.testing.assert_array_equal(mesh.uvs, [[0.25, 0], [1, 0], [1, 1]])
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2]])


def test_faces_without_texture_indices_get_minus_one(tmp_path):
    mesh = read_obj(write(tmp_path, SQUARE + SQUARE_UV + "f 1/1 2/2 3/3\nf 1 3 4\n"))
    np.testing.assert_array_equal(mesh.uv_faces, [[0, 1, 2], [-1, -1, -1]])


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ("v 1 2 x", "non-numeric"),
        ("v 1 2", "needs 3 numbers"),
        ("f 1 2", "at least 3 vertices"),
        ("f 1 2 9", "out of range"),
        ("f 0 1 2", "out of range"),
        ("f -6 1 2", "out of range"),
        ("f 1/1 2/7 3/1", "vt index 7 is out of range"),
        ("f 1/1 2 3/3", "mixes vertices"),
        ("f 1/a 2/2 3/3", "malformed face vertex"),
        ("f 1.5 2 3", "malformed face vertex"),
        ("vertex 1 2 3", "unknown OBJ statement"),
        ("f", "without values"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, bad_line, message):
    lines = [
        SQUARE.strip(),
        SQUARE_UV.strip(),
        "f 1/1 2/2 3/3",
        bad_line,
        "f 1/1 3/3 4/4",
    ]
    text = "\n".join(lines) + "\n"
    path = write(tmp_path, text)
    line = text.splitlines().index(bad_line) + 1
    with pytest.raises(ValueError, match=message) as info:
        read_obj(path)
    assert f"{path}, line {line}:" in str(info.value)


def test_read_positions_errors_and_matches_read_obj(tmp_path):
    path = write(tmp_path, SQUARE + SQUARE_UV + "f 1/1 2/2 3/3 4/4\n")
    np.testing.assert_array_equal(read_positions(path), read_obj(path).positions)
    bad = write(tmp_path, "v 0 0 0\nv 1 nan? 0\n", "bad.obj")
    with pytest.raises(ValueError, match=r"bad\.obj, line 2: 'v' has a non-numeric"):
        read_positions(bad)


def test_matches_trimesh_on_a_triangle_mesh(tmp_path):
    sphere = trimesh.creation.icosphere(subdivisions=2)
    rng = np.random.default_rng(0)
    verts = sphere.vertices * rng.uniform(0.5, 2.0, (len(sphere.vertices), 1))
    lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in verts]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in sphere.faces]
    path = write(tmp_path, "\n".join(lines) + "\n")
    ours = read_obj(path)
    theirs = trimesh.load(path, process=False, maintain_order=True, force="mesh")
    np.testing.assert_allclose(ours.positions, theirs.vertices, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(ours.faces, theirs.faces)
    np.testing.assert_array_equal(ours.face_source, np.arange(len(sphere.faces)))


def test_ict_neutral_mesh(asset_mirror):
    folder = asset_mirror / "ict-facekit"
    mesh = read_obj(folder / "generic_neutral_mesh.obj")
    # ICT README: 26,719 vertices, 26,384 polygons (548 triangles and 25,836 quads).
    assert mesh.positions.shape == (26719, 3) and mesh.uvs.shape == (28911, 2)
    assert mesh.faces.shape == (548 + 2 * 25836, 3) == mesh.uv_faces.shape
    assert mesh.face_source.max() == 26383
    assert mesh.faces.max() == 26718 and mesh.uv_faces.min() >= 0
    np.testing.assert_array_equal(read_positions(folder / "identity000.obj").shape, mesh.positions.shape)
