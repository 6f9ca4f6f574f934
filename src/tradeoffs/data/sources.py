"""Where corpus bytes come from: the embedded standard-library corpus, and downloads verified by sha256.

The embedded corpus (`stdlib`) concatenates the running Python's standard-library sources in sorted path
order, each file preceded by a `# <path>` line; tests, site-packages, the generated codec tables
(encodings/, pydoc_data/), the GUI packages (idlelib/, tkinter/, turtledemo/) and build-specific files
(_sysconfigdata*, config-*/) are left out. It needs no network. Its bytes are those of the Python release:
patch releases and distribution patches change files, so its sha256 is computed on every use and recorded
with the results (docs/data.md lists known hashes).

Downloads go to a cache directory, are streamed to a temporary file while hashed, and are moved into place
only when the hash matches. A file with another hash is kept aside as `<name>.rejected-<sha8>` and never used.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import sysconfig
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from urllib.parse import urlparse

from tqdm import tqdm

EXCLUDED_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"})
# Generated codec tables and help text, and the GUI packages some distributions ship separately.
EXCLUDED_TOP = frozenset({"encodings", "pydoc_data", "idlelib", "tkinter", "turtledemo"})


def _build_specific(relative: str) -> bool:
    """Files that record the build or the installation (paths, compiler flags), not the library."""
    name = relative.rsplit("/", 1)[-1]
    return (
        relative.startswith("config-")
        or name.startswith("_sysconfigdata")
        or name in {"sitecustomize.py", "_distutils_system_mod.py"}
    )


CHUNK = 1 << 20


class DataError(RuntimeError):
    """A corpus cannot be obtained or fails its checksum; the message says what to do."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def stdlib_files(root: Path | None = None) -> list[Path]:
    """The embedded corpus's files: every .py under the standard library, sorted by relative path."""
    root = Path(root or sysconfig.get_paths()["stdlib"])
    files = []
    for directory, subdirs, names in os.walk(root):
        top = Path(directory) == root
        subdirs[:] = [d for d in subdirs if d not in EXCLUDED_DIRS and not (top and d in EXCLUDED_TOP)]
        files.extend(Path(directory, name) for name in names if name.endswith(".py"))
    files = [path for path in files if not _build_specific(path.relative_to(root).as_posix())]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def stdlib_corpus(root: Path | None = None) -> bytes:
    """The embedded `stdlib` corpus: each selected file as `# <relative path>` then its bytes, in order."""
    root = Path(root or sysconfig.get_paths()["stdlib"])
    pieces = []
    for path in stdlib_files(root):
        pieces.append(f"# {path.relative_to(root).as_posix()}\n".encode())
        pieces.append(path.read_bytes())
    return b"".join(pieces)


def _cache_name(url: str, sha256: str) -> str:
    return os.path.basename(urlparse(url).path) or f"download-{sha256[:12]}"


def _reject(path: Path, expected: str, actual: str, url: str) -> DataError:
    aside = path.with_name(f"{path.name}.rejected-{actual[:8]}")
    os.replace(path, aside)
    return DataError(
        f"checksum mismatch for {url}: expected sha256 {expected}, got {actual}; the file was kept aside at "
        f"{aside} and is not used. Check data.url/data.sha256, or place the right file at {path}"
    )


def fetch(url: str, sha256: str, cache_dir: Path, timeout: float = 60.0) -> Path:
    """The verified local copy of `url` in `cache_dir` (downloaded once). Raises DataError when the file
    cannot be downloaded (naming the URL and where to put the file by hand) or its sha256 differs."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / _cache_name(url, sha256)
    if target.is_file():
        actual = sha256_file(target)
        if actual != sha256:
            raise _reject(target, sha256, actual, url)
        return target
    handle, partial = tempfile.mkstemp(dir=cache_dir, prefix=f".{target.name}.", suffix=".part")
    digest = hashlib.sha256()
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=target.name, disable=None, leave=False) as bar:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError, ValueError) as error:
        Path(partial).unlink(missing_ok=True)
        if isinstance(error, urllib.error.HTTPError):
            reason = f"HTTP {error.code} {error.reason}"
        else:
            reason = getattr(error, "reason", None) or error
        raise DataError(
            f"could not download {url} ({reason}). If this machine is offline, download the file elsewhere "
            f"and place it at {target} (expected sha256 {sha256})"
        ) from None
    os.replace(partial, target)
    if digest.hexdigest() != sha256:
        raise _reject(target, sha256, digest.hexdigest(), url)
    return target


def read_member(path: Path, member: str = "", max_bytes: int = 0) -> bytes:
    """Bytes of a downloaded file: a .zip archive's `member` (or its only file), a .gz file decompressed,
    anything else as is; at most `max_bytes` (0 = all)."""
    limit = max_bytes or -1
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if not n.endswith("/")]
            if not member and len(names) != 1:
                raise DataError(f"{path.name} holds {len(names)} files; set data.member to one of: {', '.join(names)}")
            name = member or names[0]
            if name not in names:
                raise DataError(f"{path.name} has no member {name!r}; valid members: {', '.join(names)}")
            with archive.open(name) as handle:
                return handle.read(limit)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        return handle.read(limit)
