"""Third-party assets (face models): a registry, a resolver and a hash-checked download.

``resolve(name)`` returns an asset's folder. It looks, in order, at an explicit path,
``$FACEFLAX_ASSETS/<name>/`` (a local mirror) and the user cache
``$FACEFLAX_HOME/<name>/`` (default ``~/.cache/faceflax``), then downloads a public
asset into that cache.
Registration-gated assets (BFM) are never downloaded: the error says how to get them.
Nothing is read or downloaded at import time.
"""

import dataclasses
import hashlib
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from tqdm import tqdm


class Source(NamedTuple):
    """A file's sha256 (None: unknown, unchecked) and URL (None: never downloaded)."""

    sha256: str | None
    url: str | None


@dataclasses.dataclass(frozen=True)
class Asset:
    """A folder of third-party files; ``files`` maps a path in it to its ``Source``.

    Every file of a public (not ``gated``) asset has a URL. ``optional`` files may be
    absent from a complete folder.
    """

    name: str
    description: str
    licence: str
    origin: str
    files: Mapping[str, Source]
    gated: bool
    how_to_get: str
    optional: frozenset[str] = frozenset()

    @property
    def required(self) -> list[str]:
        """The files a folder must hold to count as this asset."""
        return [file for file in self.files if file not in self.optional]


class AssetNotFoundError(ValueError):
    """An asset is in none of the places searched and could not be downloaded."""


_ICT_URL = "https://raw.githubusercontent.com/ICT-VGL/ICT-FaceKit/da5f95a"
_ICT_MODEL_URL = f"{_ICT_URL}/FaceXModel"
_ICT_ROOT_FILES = ("LICENSE", "README.md")  # the rest are in FaceXModel/
_ICT_SHA256 = {
    "LICENSE": "b20a78d8fc51657e14f3e00c8abb538d786ad00aa63210328c22565e583167e1",
    "README.md": "614116987854431bbdadbf7772f7352edeeca55580f62021dccb78aaf76febf6",
    "ICTFaceModelMaterial.mtl": "9c2c6daf384a2d1f5536d330339a897a312f57d89587b9be31bec7fe7b37c297",
    "vertex_indices.json": "4f9b35306299980dd46bee4a6b79bb95dfae1953693b74b35a64f7febfd081a5",
    "generic_neutral_mesh.obj": "eedbc2576d8e5ea57f55255b8f98263213a1efb5431d8bfceed1d7aef10271f9",
    "identity000.obj": "918160cf82d541336b4c367cf93199c9827832bde02511b8fbdf9019d6f1a773",
    "identity001.obj": "325115059deb6691cb2d55da07ae38bb08ce36e4ea146982f294a17513155b3b",
    "identity002.obj": "e140e8305cd5232def3b94331d08450a13f312e525130fca8eeaa653231decc3",
    "identity003.obj": "be3481a6bed8953a6d9dd7f811a04bc6d2ab94d1bd76ecfaa6d4cae87a450f9d",
    "identity004.obj": "a2f411cc763e881cff250eb23c04fe8375b63a05a7dfa0492422e3b943e8a01d",
    "identity005.obj": "274178eb33e33c555e6024535a51a62ee50050abd4f7014bbc7a4dc90a638c65",
    "identity006.obj": "c9ae0426ab88b49065c852148f7bcff8cb09253fbee068b78955bd76c19a3e0f",
    "identity007.obj": "ba38037151277b94e2b6b9b9800275d92d2c0aa8d61057b0718c9d7b90fffc44",
    "identity008.obj": "b03543b783a15c1d28c5a384cd93657eda915227756780f682bc7370cd94ce1d",
    "identity009.obj": "0cbb5ca5db9c61fa91df8d1c04b9b383b40d797032ca3f5a28a234d495e31b54",
    "identity010.obj": "7bd1c31b76428cfb4bf29a2ac38bc2711d8c254aec25bba7ebd7a9b7dc81ebc7",
    "identity011.obj": "68684bafa7e460ce7dd69c618a260143e6ecfa1254d0d49ec40202092a4b05f3",
    "identity012.obj": "b899f17f8727b903b36f9a879ec95427c4df93d415956a211745bf44ed2be2dd",
    "identity013.obj": "57a17eb9945a21c0a869dca4401964742c8d47e512d680fef94447aff826abc3",
    "identity014.obj": "8a1a490f6e695c9116b820a95137823282415fb20bb0362725bedf0a1c2d8bd3",
    "identity015.obj": "9f3da084848efabf5b898f72d3006db7442497a560185483358a8d4aefb8ac2d",
    "identity016.obj": "184d17ffd35e7796777bf6008e0f904810e3781b46b37f37f9a550f1969c2525",
    "identity017.obj": "5b55b7a104f561d5df44a9d0249f21bcf80890dd59666d777c2db9eccd128759",
    "identity018.obj": "8ae8dd9cb5c7173f49643974420261f10f0437a7636531a50c2ae9a2badaf9a3",
    "identity019.obj": "a22d531cddb3a0aaed12e6feddf45993f73545253d35642300dc4eca6438117a",
    "browInnerUp_L.obj": "81fb1625794ea36fb13303234ce06cef798acfdbc489077e22ae195a705bc92e",
    "browInnerUp_R.obj": "5e66b46cdad89fd1237273db2b885511688cf37636cedfdde432a4844c9109e7",
    "cheekPuff_L.obj": "f53fd2bdeb8e26d0db8a684ab9c095c6bb113b74575dec329facae2799ff18c6",
    "cheekPuff_R.obj": "cd5b5d0f3a653a1fa31abeb65daf8fd6ffdf83a4d1bf22333a469b13b96fa801",
    "eyeBlink_L.obj": "f5ed1c3072a400083b7d4f7f5cb3d73882b7ebb95c3232f957394db8cf7fe19e",
    "eyeBlink_R.obj": "d281ad0af03e89a70abf1214d52c295b3a279c9b35f6795938c4487f467ca003",
    "jawOpen.obj": "8d84355e10f48b05550980cee385bcd426f4797090da76a20de0535bb2f99f4a",
    "mouthFrown_L.obj": "1bfd720ad024e5805ac8472df170c2c96c09e817e02b66f916057d6e2d31ee9b",
    "mouthFunnel.obj": "d4f1dba04c1af5fc37452c88cc54a72f1133296c26d9abe0f8adb74dc5c2577f",
    "mouthPucker.obj": "9929c31025667683809f70df7dce612f72e3acfc7f9e8acb939f6636509dbc5c",
    "mouthSmile_L.obj": "91794e73cef330f1c7d1f4541723544708536b39d5dd6ed35fd8f83f676b7af4",
    "mouthSmile_R.obj": "3fb3de3da9f8358edbb933a65ce6e44c25a2501f30dcb240daea725b68adac84",
}
_MEDIAPIPE_URL = (
    "https://raw.githubusercontent.com/google/mediapipe/master/"
    "mediapipe/modules/face_geometry/data/canonical_face_model.obj"
)

ASSETS: dict[str, Asset] = {
    asset.name: asset
    for asset in (
        Asset(
            name="ict-facekit",
            description=(
                "ICT Face Model Light: generic neutral mesh (26,719 vertices, UDIM "
                "UVs), identity principal components 000-019 and 12 ARKit expression "
                "blendshapes as full OBJ meshes, material, and vertex index sets with "
                "68 landmarks (vertex_indices.json). The full model has 100 identity "
                "and 53 expression OBJs; this entry lists the subset the reference "
                "mirror carries."
            ),
            licence="MIT",
            origin="https://github.com/ICT-VGL/ICT-FaceKit/tree/da5f95a/FaceXModel",
            files={
                file: Source(
                    sha,
                    f"{_ICT_URL if file in _ICT_ROOT_FILES else _ICT_MODEL_URL}/{file}",
                )
                for file, sha in _ICT_SHA256.items()
            },
            gated=False,
            how_to_get=(
                "Run `faceflax assets fetch ict-facekit` where there is internet "
                "access, or download the files of "
                "https://github.com/ICT-VGL/ICT-FaceKit at commit da5f95a (folder "
                "FaceXModel/; README.md and LICENSE from the repository root)."
            ),
        ),
        Asset(
            name="mediapipe",
            description=("MediaPipe canonical face model: mean face mesh, 468 vertices with UVs, 898 triangles."),
            licence="Apache-2.0",
            origin=(
                "https://github.com/google/mediapipe/blob/master/"
                "mediapipe/modules/face_geometry/data/canonical_face_model.obj"
            ),
            files={
                "canonical_face_model.obj": Source(
                    "8bac80443397e113f41a8b565ea72c59390bc031d9defab289dba7bc0c54e618",
                    _MEDIAPIPE_URL,
                )
            },
            gated=False,
            how_to_get=("Run `faceflax assets fetch mediapipe` where there is internet access, or download the file."),
        ),
        Asset(
            name="bfm",
            description=(
                "Basel Face Model 2009 (01_MorphableModel.mat: 53,490-vertex shape and "
                "albedo PCA), the expression basis of Guo et al. (Exp_Pca.bin) and, "
                "optionally, Deep3DFaceRecon's 35,709-vertex front-face model "
                "(BFM_model_front.mat)."
            ),
            licence="BFM (registration; no redistribution)",
            origin="https://faces.dmi.unibas.ch/bfm/",
            files={
                "01_MorphableModel.mat": Source(None, None),
                "Exp_Pca.bin": Source(None, None),
                "BFM_model_front.mat": Source(None, None),
            },
            gated=True,
            how_to_get=(
                "The Basel Face Model needs registration and may not be "
                "redistributed, so faceflax never downloads it. Register at "
                "https://faces.dmi.unibas.ch/bfm/ and download 01_MorphableModel.mat "
                "(BFM 2009); get Exp_Pca.bin from https://github.com/Juyong/3DFace. "
                "For BFM_model_front.mat, put both in the BFM/ folder of "
                "https://github.com/sicxu/Deep3DFaceRecon_pytorch and run its BFM "
                "conversion (util/load_mats.py, transferBFM09; its scripts run it on "
                "first use)."
            ),
            optional=frozenset({"BFM_model_front.mat"}),
        ),
    )
}


def cache_root() -> Path:
    """The user cache: ``$FACEFLAX_HOME``, default ``~/.cache/faceflax``."""
    home = os.environ.get("FACEFLAX_HOME") or Path.home() / ".cache" / "faceflax"
    return Path(home).expanduser()


def _asset(name: str) -> Asset:
    if name not in ASSETS:
        known = ", ".join(sorted(ASSETS))
        raise ValueError(f"unknown asset {name!r}; known assets: {known}")
    return ASSETS[name]


def _missing(asset: Asset, folder: Path) -> list[str]:
    return [file for file in asset.required if not (folder / file).is_file()]


def _search_places(name: str) -> list[tuple[str, Path | None]]:
    """``(label, folder)`` of the mirror (None when unset) and of the user cache."""
    mirror = os.environ.get("FACEFLAX_ASSETS")
    return [
        ("$FACEFLAX_ASSETS", Path(mirror).expanduser() / name if mirror else None),
        ("user cache", cache_root() / name),
    ]


def locate(name: str, path: str | os.PathLike | None = None) -> Path | None:
    """The folder with every required file of asset ``name``, or None; never downloads.

    An explicit ``path`` (the asset's own folder) is the only place looked at, and a
    ``ValueError`` names what it lacks.
    """
    asset = _asset(name)
    if path is not None:
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise ValueError(f"asset {name!r}: folder {folder} does not exist")
        if missing := _missing(asset, folder):
            raise ValueError(f"asset {name!r}: {folder} lacks {', '.join(missing)}")
        return folder
    for _, folder in _search_places(name):
        if folder is not None and folder.is_dir() and not _missing(asset, folder):
            return folder
    return None


def resolve(
    name: str,
    path: str | os.PathLike | None = None,
    *,
    download: bool = True,
    progress: bool = True,
) -> Path:
    """The folder of asset ``name``: ``path``, the mirror, the cache, or a download.

    Raises ``ValueError`` if an explicit ``path`` lacks files, and
    ``AssetNotFoundError`` (where it looked, what to download and where to put it) if
    the asset is nowhere and cannot be downloaded.
    """
    asset = _asset(name)
    folder = locate(name, path)
    if folder is not None:
        return folder
    if asset.gated:
        reason = "Registration-gated: never downloaded."
    elif not download:
        reason = "Not downloaded (download=False)."
    else:
        try:
            return fetch(name, progress=progress)
        except ValueError as error:
            reason = f"Download failed: {error}"
    raise AssetNotFoundError(_not_found_message(asset, reason))


def _not_found_message(asset: Asset, reason: str) -> str:
    lines = [f"asset {asset.name!r} ({asset.licence}, {asset.origin}) not found."]
    lines.append("Searched:")
    for label, folder in _search_places(asset.name):
        if folder is None:
            lines.append(f"  {label}: not set")
        elif not folder.is_dir():
            lines.append(f"  {label}: {folder} does not exist")
        else:
            lines.append(f"  {label}: {folder} lacks {', '.join(_missing(asset, folder))}")
    lines += [reason, asset.how_to_get]
    lines.append(f"Put these files in {cache_root() / asset.name}/ (or $FACEFLAX_ASSETS/{asset.name}/, or pass path=):")
    for file, source in asset.files.items():
        url = f"  <- {source.url}" if source.url else ""
        lines.append(f"  {file}{url}{' (optional)' if file in asset.optional else ''}")
    return "\n".join(lines)


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def verify(name: str, path: str | os.PathLike | None = None) -> list[str]:
    """Problems with asset ``name``, one line each (missing file, sha256 mismatch).

    Checks ``path`` if given, else the folder ``locate`` finds, else the first partial
    one; files whose sha256 is unknown are only checked for existence.
    """
    asset = _asset(name)
    if path is None:
        places = _search_places(name)
        partial = [f for _, f in places if f is not None and f.is_dir()]
        folder = locate(name) or next(iter(partial), None)
        if folder is None:
            searched = ", ".join(str(f or f"{label} (not set)") for label, f in places)
            return [f"{name}: not found (searched {searched})"]
    else:
        folder = Path(path).expanduser()
    problems = [f"{name}: {folder / file}: missing" for file in _missing(asset, folder)]
    for file, source in asset.files.items():
        if source.sha256 is None or not (folder / file).is_file():
            continue
        if (actual := _sha256(folder / file)) != source.sha256:
            problems.append(f"{name}: {folder / file}: sha256 {actual} != expected {source.sha256}")
    return problems


def _download(url: str, target: Path, sha256: str | None, progress: bool) -> None:
    """Streams ``url`` to ``target``, checking its sha256; ``ValueError`` on failure."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url) as response, target.open("wb") as out:
            length = response.headers.get("Content-Length")
            with tqdm(
                total=int(length) if length else None,
                unit="B",
                unit_scale=True,
                desc=target.name,
                disable=not progress,
            ) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except OSError as error:
        raise ValueError(f"could not download {url}: {error}") from error
    if sha256 is not None and digest.hexdigest() != sha256:
        raise ValueError(
            f"{url}: sha256 {digest.hexdigest()} != expected {sha256} "
            "(download corrupted, or the file changed upstream)"
        )


def fetch(name: str, *, progress: bool = True) -> Path:
    """Downloads asset ``name`` into the user cache, hash-checked; returns its folder.

    Files already cached with the right hash are kept. The others are staged in a
    temporary folder and moved in (``os.replace``) only once all have downloaded and
    matched: a failure leaves nothing behind and a partial download never looks
    complete. A gated asset raises ``ValueError`` saying how to get it.
    """
    asset = _asset(name)
    if asset.gated:
        raise ValueError(f"asset {name!r} is registration-gated and is never downloaded. " + asset.how_to_get)
    folder = cache_root() / name
    todo = {
        file: source
        for file, source in asset.files.items()
        if not (folder / file).is_file() or (source.sha256 is not None and _sha256(folder / file) != source.sha256)
    }
    if not todo:
        return folder
    cache_root().mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=cache_root()))
    try:
        for file, source in todo.items():
            (staging / file).parent.mkdir(parents=True, exist_ok=True)
            _download(source.url, staging / file, source.sha256, progress)
        for file in todo:
            (folder / file).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / file, folder / file)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
