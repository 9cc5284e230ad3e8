"""The browser's runtime for the web page: onnxruntime-web, which version, from where, verified.

onnxruntime-web (MIT licence, Microsoft; maintained with ONNX Runtime) runs the page's
ONNX model in WebAssembly. Its three files are 14 MB, too large to ship in retrain's
wheel for the few who export a page, so they are fetched once, when a page is first
exported, from the npm registry (the package's own tarball, checked against its
published SHA-512), and kept in retrain's cache folder; every later export copies them
from there. A machine without network is given the tarball with --web_runtime.
"""

import base64
import hashlib
import io
import json
import os
import tarfile
import urllib.error
import urllib.request

from retrain.data import storage
from retrain.errors import UserError

VERSION = "1.31.1"
LICENCE = "MIT"
# The npm registry's integrity of onnxruntime-web-1.31.1.tgz (`npm view onnxruntime-web@1.31.1 dist.integrity`).
INTEGRITY = "sha512-5GeH+bWQ+HxM10z7erGlsWqryrwMbSvm/1tkIsKTT48g0fI19VXVVC435t4t7VsPdSQeS7NmuZPXrQ73k82URw=="
# What the page loads (the WebAssembly build's loader, its module and the binary; SIMD, threads
# off) and each file's SHA-256 in that tarball: files from a folder or the cache are checked too.
FILES = {
    "ort.wasm.min.js": "b8a78c408c40da65fdc8ba0846f7b2948e92a4c6d6b23cc8e4165e428ad95443",
    "ort-wasm-simd-threaded.mjs": "30ed0b5cd1182ede931fea448afb567d4dc705ec957af09f108a2be5f770dac3",
    "ort-wasm-simd-threaded.wasm": "4b884c203b0fa48d057be3332c65513ff85aa3c5bddd6946acc0fab7ecda001d",
}
_TIMEOUT_SECONDS = 60


def tarball_url() -> str:
    registry = os.environ.get("npm_config_registry", "https://registry.npmjs.org/").rstrip("/")
    return f"{registry}/onnxruntime-web/-/onnxruntime-web-{VERSION}.tgz"


def cache_folder() -> str:
    """Where the runtime is kept: $RETRAIN_CACHE_DIR, else $XDG_CACHE_HOME/retrain, else ~/.cache/retrain."""
    root = os.environ.get("RETRAIN_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "retrain")
    return os.path.join(root, f"onnxruntime-web-{VERSION}")


def runtime_files(source: str = "") -> dict[str, bytes]:
    """{file name: bytes} of FILES, from source (an onnxruntime-web .tgz, or an unpacked package
    folder), else the cache, else the npm registry (then cached).

    Raises:
      UserError: the runtime cannot be had (offline, another version, a damaged tarball).
    """
    if source:
        return _from_source(source)
    folder = cache_folder()
    try:
        cached = {name: storage.read_bytes(os.path.join(folder, name)) for name in FILES}
    except OSError:
        cached = None
    if cached is not None and not _altered(cached):
        return cached
    files = _files_of_tarball(_download(), tarball_url())
    for name, data in files.items():
        try:
            storage.write_bytes(os.path.join(folder, name), data)
        except OSError:
            break  # A cache that cannot be written: fetched again next time.
    return files


def _from_source(source: str) -> dict[str, bytes]:
    if storage.isdir(source):
        dist = storage.join(source, "dist") if storage.isdir(storage.join(source, "dist")) else source
        try:
            files = {name: storage.read_bytes(storage.join(dist, name)) for name in FILES}
        except OSError as e:
            raise UserError(f"--web_runtime {source} holds no onnxruntime-web {VERSION} files ({e}).") from e
        altered = _altered(files)
        if altered:
            raise UserError(f"--web_runtime {source}: {', '.join(altered)} differ from onnxruntime-web {VERSION} "
                            "as the npm registry publishes it; pass that version's package or .tgz.")
        return files
    try:
        data = storage.read_bytes(source)
    except OSError as e:
        raise UserError(f"Cannot read --web_runtime {source}: {e.strerror or e}") from e
    return _files_of_tarball(data, source)


def _download() -> bytes:
    url = tarball_url()
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_SECONDS) as response:
            return response.read()
    except (urllib.error.URLError, OSError) as e:
        raise UserError(
            f"The web page needs onnxruntime-web {VERSION} ({LICENCE} licence, 34 MB from the npm registry, then "
            f"kept in {cache_folder()}), and it cannot be downloaded: {url} ({getattr(e, 'reason', e)}). On a "
            f"machine with network run `npm pack onnxruntime-web@{VERSION}` (or download that address), copy the "
            ".tgz here and pass --web_runtime FILE."
        ) from e


def _altered(files: dict[str, bytes]) -> list[str]:
    """The names among files whose bytes are not the published ones."""
    return [name for name, data in files.items() if hashlib.sha256(data).hexdigest() != FILES[name]]


def _files_of_tarball(data: bytes, where: str) -> dict[str, bytes]:
    digest = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode("ascii")
    if digest != INTEGRITY:
        raise UserError(f"{where} is not onnxruntime-web {VERSION} as the npm registry publishes it "
                        "(its SHA-512 differs); pass that version's .tgz.")
    files = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for name in FILES:
            member = archive.extractfile(f"package/dist/{name}")
            if member is None:
                raise UserError(f"{where} has no dist/{name}.")
            files[name] = member.read()
        package = json.loads(archive.extractfile("package/package.json").read())
    if package.get("version") != VERSION:
        raise UserError(f"{where} is onnxruntime-web {package.get('version')}, not {VERSION}.")
    return files


def notice() -> str:
    """The third-party notice that travels with the page."""
    return (f"onnxruntime-web {VERSION} (ort.wasm.min.js, ort-wasm-simd-threaded.mjs, ort-wasm-simd-threaded.wasm)\n"
            f"Copyright (c) Microsoft Corporation. Licensed under the {LICENCE} License.\n"
            "Source: https://github.com/microsoft/onnxruntime (js/web), package: "
            f"https://www.npmjs.com/package/onnxruntime-web/v/{VERSION}\n")
