"""Asset registry and resolver: search order, errors that say what to do, and the
hash-checked download (through file:// URLs: tests never touch the network)."""

import hashlib
import urllib.request

import pytest

from faceflax import assets, cli
from faceflax.assets import Asset, AssetNotFoundError, Source

MEDIAPIPE = "canonical_face_model.obj"


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """A fresh user cache, no mirror, and a urlopen that fails on all but file:// URLs.

    Returns the list of URLs opened.
    """
    monkeypatch.setenv("FACEFLAX_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FACEFLAX_ASSETS", raising=False)
    opened = []
    real_urlopen = urllib.request.urlopen

    def urlopen(url, *args, **kwargs):
        assert url.startswith("file:"), f"test touched the network: {url}"
        opened.append(url)
        return real_urlopen(url, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return opened


def _write(folder, files: dict[str, bytes]):
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def _toy(tmp_path, monkeypatch, files: dict[str, bytes], wrong_sha: str = ""):
    """Registers asset ``toy``, served from ``tmp_path/origin`` through file:// URLs.

    The registered sha256 of file ``wrong_sha`` is wrong.
    """
    origin = _write(tmp_path / "origin", files)
    sources = {
        name: Source(
            "0" * 64 if name == wrong_sha else hashlib.sha256(data).hexdigest(),
            (origin / name).as_uri(),
        )
        for name, data in files.items()
    }
    toy = Asset("toy", "test files", "CC0", "file://", sources, False, "fetch it")
    monkeypatch.setitem(assets.ASSETS, "toy", toy)
    return toy


def test_registry_entries():
    ict, mediapipe, bfm = (assets.ASSETS[n] for n in ("ict-facekit", "mediapipe", "bfm"))
    assert len(ict.files) == 37 and not ict.gated
    assert ict.files["LICENSE"].url.endswith("ICT-FaceKit/da5f95a/LICENSE")
    assert ict.files["identity019.obj"].url.endswith("ICT-FaceKit/da5f95a/FaceXModel/identity019.obj")
    assert mediapipe.files[MEDIAPIPE].url.endswith(f"face_geometry/data/{MEDIAPIPE}")
    assert all(len(s.sha256) == 64 for a in (ict, mediapipe) for s in a.files.values())
    assert bfm.gated and all(s == Source(None, None) for s in bfm.files.values())
    assert bfm.required == ["01_MorphableModel.mat", "Exp_Pca.bin"]
    public = [a for a in assets.ASSETS.values() if not a.gated]
    assert all(s.url for a in public for s in a.files.values())


def test_explicit_path_beats_mirror_beats_cache(tmp_path, monkeypatch):
    explicit, mirror, cache = (tmp_path / d for d in ("explicit", "mirror", "home"))
    for folder in (explicit, mirror / "mediapipe", cache / "mediapipe"):
        _write(folder, {MEDIAPIPE: b"v 0 0 0\n"})
    monkeypatch.setenv("FACEFLAX_ASSETS", str(mirror))
    assert assets.resolve("mediapipe", explicit, download=False) == explicit
    assert assets.resolve("mediapipe", download=False) == mirror / "mediapipe"
    monkeypatch.delenv("FACEFLAX_ASSETS")
    assert assets.resolve("mediapipe", download=False) == cache / "mediapipe"


def test_explicit_path_must_be_complete(tmp_path):
    _write(tmp_path / "home" / "mediapipe", {MEDIAPIPE: b"v 0 0 0\n"})  # no fallback
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=f"'mediapipe'.*lacks {MEDIAPIPE}"):
        assets.resolve("mediapipe", tmp_path / "empty")
    with pytest.raises(ValueError, match="does not exist"):
        assets.resolve("mediapipe", tmp_path / "nowhere")


def test_incomplete_folder_is_passed_over(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEFLAX_ASSETS", str(tmp_path / "mirror"))
    _write(tmp_path / "mirror" / "bfm", {"01_MorphableModel.mat": b"x"})
    # Optional BFM_model_front.mat may be absent.
    _write(tmp_path / "home" / "bfm", {"01_MorphableModel.mat": b"x", "Exp_Pca.bin": b"y"})
    assert assets.resolve("bfm") == tmp_path / "home" / "bfm"


def test_missing_asset_error_says_what_to_download_and_where(tmp_path, offline):
    with pytest.raises(AssetNotFoundError) as error:
        assets.resolve("mediapipe", download=False)
    message = str(error.value)
    assert "asset 'mediapipe'" in message and "Apache-2.0" in message
    assert "$FACEFLAX_ASSETS: not set" in message
    assert f"{tmp_path / 'home' / 'mediapipe'} does not exist" in message
    assert f"Put these files in {tmp_path / 'home' / 'mediapipe'}/" in message
    assert f"{MEDIAPIPE}  <- {assets.ASSETS['mediapipe'].files[MEDIAPIPE].url}" in message
    assert isinstance(error.value, ValueError) and offline == []


def test_gated_asset_is_never_downloaded(tmp_path, offline):
    with pytest.raises(AssetNotFoundError) as error:
        assets.resolve("bfm")
    message = str(error.value)
    assert "Registration-gated" in message and "https://faces.dmi.unibas.ch/bfm/" in message
    assert "Deep3DFaceRecon_pytorch" in message and "BFM_model_front.mat (optional)" in message
    assert f"Put these files in {tmp_path / 'home' / 'bfm'}/" in message
    with pytest.raises(ValueError, match="registration-gated"):
        assets.fetch("bfm")
    assert offline == [] and not (tmp_path / "home").exists()


def test_download_checks_hashes_and_caches(tmp_path, monkeypatch, offline):
    files = {"a.txt": b"alpha", "sub/b.bin": bytes(range(256)) * 100}
    _toy(tmp_path, monkeypatch, files)
    folder = assets.resolve("toy", progress=False)
    assert folder == tmp_path / "home" / "toy"
    assert {n: (folder / n).read_bytes() for n in files} == files
    assert assets.verify("toy") == [] and len(offline) == 2
    assert assets.resolve("toy") == folder and len(offline) == 2  # cached
    assert [p.name for p in (tmp_path / "home").iterdir()] == ["toy"]  # no staging


def test_hash_mismatch_leaves_nothing_behind(tmp_path, monkeypatch):
    _toy(tmp_path, monkeypatch, {"a.txt": b"alpha", "b.txt": b"beta"}, wrong_sha="b.txt")
    with pytest.raises(ValueError, match=r"b\.txt: sha256 [0-9a-f]{64} != expected 0"):
        assets.fetch("toy", progress=False)
    assert list((tmp_path / "home").iterdir()) == []  # a.txt, though good, is gone
    with pytest.raises(AssetNotFoundError, match="(?s)asset 'toy'.*Download failed:.*sha256"):
        assets.resolve("toy", progress=False)
    assert list((tmp_path / "home").iterdir()) == []


def test_verify_reports_problems_and_fetch_repairs(tmp_path, monkeypatch):
    _toy(tmp_path, monkeypatch, {"a.txt": b"alpha", "b.txt": b"beta"})
    cache = _write(tmp_path / "home" / "toy", {"a.txt": b"tampered"})
    tampered, alpha = (hashlib.sha256(data).hexdigest() for data in (b"tampered", b"alpha"))
    assert assets.verify("toy") == [
        f"toy: {cache / 'b.txt'}: missing",
        f"toy: {cache / 'a.txt'}: sha256 {tampered} != expected {alpha}",
    ]
    assert assets.fetch("toy", progress=False) == cache
    assert assets.verify("toy") == [] and (cache / "a.txt").read_bytes() == b"alpha"
    searched = f"$FACEFLAX_ASSETS (not set), {tmp_path / 'home' / 'bfm'}"
    assert assets.verify("bfm") == [f"bfm: not found (searched {searched})"]


def test_real_mirror_verifies(asset_mirror, monkeypatch):
    monkeypatch.setenv("FACEFLAX_ASSETS", str(asset_mirror))
    for name in ("ict-facekit", "mediapipe"):
        assert sorted(p.name for p in (asset_mirror / name).iterdir()) == sorted(assets.ASSETS[name].files)
        assert assets.verify(name) == []
        assert assets.resolve(name, download=False) == asset_mirror / name


def test_cli_list(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FACEFLAX_ASSETS", str(tmp_path / "mirror"))
    _write(tmp_path / "mirror" / "mediapipe", {MEDIAPIPE: b"v 0 0 0\n"})
    assert cli.main(["assets", "list"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()}
    assert rows["name"] == ["name", "licence", "gated", "location"]
    assert rows["mediapipe"] == [
        "mediapipe",
        "Apache-2.0",
        "no",
        str(tmp_path / "mirror" / "mediapipe"),
    ]
    assert rows["ict-facekit"] == ["ict-facekit", "MIT", "no", "missing"]
    assert rows["bfm"][-2:] == ["yes", "missing"]


def test_cli_verify_exit_codes(tmp_path, monkeypatch, capsys):
    _toy(tmp_path, monkeypatch, {"a.txt": b"alpha"})
    assert cli.main(["assets", "verify"]) == 0  # nothing present: nothing to check
    assert "toy: not present, skipped" in capsys.readouterr().out
    assert cli.main(["assets", "verify", "bfm"]) == 1
    assert capsys.readouterr().err.startswith("bfm: not found")
    cache = _write(tmp_path / "home" / "toy", {"a.txt": b"alpha"})
    assert cli.main(["assets", "verify"]) == 0
    assert f"toy: ok ({cache})" in capsys.readouterr().out
    (cache / "a.txt").write_bytes(b"tampered")
    assert cli.main(["assets", "verify", "toy"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "a.txt: sha256" in err[0]
    assert cli.main(["assets", "verify", "nope"]) == 2
    assert "faceflax assets: error: unknown asset 'nope'" in capsys.readouterr().err


def test_cli_verify_real_mirror(asset_mirror, monkeypatch, capsys):
    monkeypatch.setenv("FACEFLAX_ASSETS", str(asset_mirror))
    assert cli.main(["assets", "verify", "ict-facekit", "mediapipe"]) == 0
    assert capsys.readouterr().err == ""


def test_cli_fetch(tmp_path, monkeypatch, capsys):
    assert cli.main(["assets", "fetch", "bfm"]) == 2
    err = capsys.readouterr().err
    assert "faceflax assets: error: asset 'bfm' is registration-gated" in err
    assert "faces.dmi.unibas.ch" in err
    _toy(tmp_path, monkeypatch, {"a.txt": b"alpha"})
    assert cli.main(["assets", "fetch", "toy", "--no-progress"]) == 0
    assert capsys.readouterr().out == f"toy: {tmp_path / 'home' / 'toy'}\n"
    assert (tmp_path / "home" / "toy" / "a.txt").read_bytes() == b"alpha"
