"""Tests for the binary CIFAR-10 layout (cifar-10-batches-bin): reading, layout choice, refusals, CLI."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import lgn_nas.data as data
from lgn_nas.cli import main
from lgn_nas.data import cifar_bin, cifar_layout
from lgn_nas.data.cifar import CIFAR10_CLASSES

RECORD = cifar_bin.CIFAR10_BIN_RECORD_BYTES
TRAIN_BATCHES = cifar_bin.CIFAR10_BIN_TRAIN_BATCHES
TEST_BATCH = cifar_bin.CIFAR10_BIN_TEST_BATCH

#: The shared JPEG-q75 copy of CIFAR-10 in the binary layout, beside the repository clone.
REAL_CIFAR10_BIN = Path(os.environ.get(
    "LGN_CIFAR10_DIR", Path(__file__).resolve().parents[2] / "shared/data/cifar10-jpeg/cifar-10-batches-bin"))


def _write_batch(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Records as the official files hold them: label byte, then the R, G, B planes row-major."""
    records = np.empty((len(labels), RECORD), dtype=np.uint8)
    records[:, 0] = labels
    records[:, 1:] = images.reshape(len(labels), -1)
    records.tofile(path)


def _write_bin_dir(directory: Path, *, per_batch: int = 4, n_test: int = 3, seed: int = 0,
                   meta: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A small cifar-10-batches-bin directory; returns (x_train, y_train, x_test, y_test) as written."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    x_train = rng.integers(0, 256, (5 * per_batch, 3, 32, 32), dtype=np.uint8)
    y_train = rng.integers(0, 10, 5 * per_batch).astype(np.uint8)
    x_test = rng.integers(0, 256, (n_test, 3, 32, 32), dtype=np.uint8)
    y_test = rng.integers(0, 10, n_test).astype(np.uint8)
    for i, name in enumerate(TRAIN_BATCHES):
        part = slice(i * per_batch, (i + 1) * per_batch)
        _write_batch(directory / name, x_train[part], y_train[part])
    _write_batch(directory / TEST_BATCH, x_test, y_test)
    if meta:
        (directory / cifar_bin.CIFAR10_BIN_META).write_text("\n".join(CIFAR10_CLASSES) + "\n\n")
    return x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64)


def _write_py_dir(directory: Path, *, per_batch: int = 2) -> None:
    """A small cifar-10-batches-py directory (the other layout), all labels 7."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": np.zeros((per_batch, 3072), dtype=np.uint8), b"labels": [7] * per_batch}
        (directory / name).write_bytes(pickle.dumps(batch))


# --------------------------------------------------------------------------- reading

def test_pixel_layout_round_trip(tmp_path):
    x_train, y_train, x_test, y_test = _write_bin_dir(tmp_path / "cifar-10-batches-bin")
    # Mark known pixels: record 6 (data_batch_2's third), green channel, row 5, column 17; and the
    # first and last byte of a record's pixels, which are red (0, 0) and blue (31, 31).
    x_train[6] = 0
    x_train[6, 1, 5, 17] = 201
    x_train[6, 0, 0, 0] = 11
    x_train[6, 2, 31, 31] = 99
    _write_batch(tmp_path / "cifar-10-batches-bin" / TRAIN_BATCHES[1], x_train[4:8], y_train[4:8])
    raw = (tmp_path / "cifar-10-batches-bin" / TRAIN_BATCHES[1]).read_bytes()
    offset = 2 * RECORD + 1  # third record's pixels
    assert raw[offset + 1024 + 5 * 32 + 17] == 201 and raw[offset] == 11 and raw[offset + 3071] == 99

    splits = data.load_dataset("cifar10", root=tmp_path, val_size=3, dtype=torch.uint8)
    x = torch.cat([splits.train[0], splits.val[0]])
    assert x.shape == (20, 3, 32, 32) and x.dtype == torch.uint8 and splits.test[0].shape == (3, 3, 32, 32)
    assert int(x[6, 1, 5, 17]) == 201 and int(x[6, 0, 0, 0]) == 11 and int(x[6, 2, 31, 31]) == 99
    assert int(x[6].sum()) == 201 + 11 + 99
    assert torch.equal(x, torch.from_numpy(x_train))
    assert torch.equal(splits.test[0], torch.from_numpy(x_test))
    assert torch.equal(torch.cat([splits.train[1], splits.val[1]]), torch.from_numpy(y_train))
    assert torch.equal(splits.test[1], torch.from_numpy(y_test)) and splits.test[1].dtype == torch.int64
    floats = data.load_dataset("cifar10", root=tmp_path, val_size=0)
    assert floats.train[0].dtype == torch.float32 and float(floats.train[0][6, 1, 5, 17]) == pytest.approx(201 / 255)


def test_read_one_batch_and_class_names(tmp_path):
    x_train, y_train, _, _ = _write_bin_dir(tmp_path, per_batch=3)
    images, labels = cifar_bin.read_cifar_bin_batch(tmp_path / TRAIN_BATCHES[4], records=3)
    assert images.shape == (3, 3, 32, 32) and labels.dtype == np.int64
    assert np.array_equal(images, x_train[12:]) and np.array_equal(labels, y_train[12:])
    assert cifar_bin.load_cifar10_bin_arrays(tmp_path)[4] == CIFAR10_CLASSES
    (tmp_path / cifar_bin.CIFAR10_BIN_META).write_text("a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n")
    assert cifar_bin.load_cifar10_bin_arrays(tmp_path)[4] == tuple("abcdefghij")
    (tmp_path / cifar_bin.CIFAR10_BIN_META).unlink()
    assert cifar_bin.load_cifar10_bin_arrays(tmp_path)[4] == CIFAR10_CLASSES  # the file is optional


# --------------------------------------------------------------------------- which layout

def test_layout_chosen_by_what_the_directory_holds(tmp_path):
    _write_bin_dir(tmp_path / "bin" / "cifar-10-batches-bin")
    assert data.fetch_dataset("cifar10", root=tmp_path / "bin") == tmp_path / "bin" / "cifar-10-batches-bin"
    _write_bin_dir(tmp_path / "flat")  # the directory itself passed as root
    assert cifar_layout.cifar10_layout(tmp_path / "flat") == "binary"
    assert data.load_dataset("cifar10", root=tmp_path / "flat", val_size=0).train[0].shape[0] == 20

    _write_py_dir(tmp_path / "py" / "cifar-10-batches-py")
    assert cifar_layout.cifar10_layout(tmp_path / "py" / "cifar-10-batches-py") == "python"
    assert set(data.load_dataset("cifar10", root=tmp_path / "py", val_size=0).train[1].tolist()) == {7}

    # Both layouts under one root: the python one is found first, as before the binary loader existed.
    _write_bin_dir(tmp_path / "py" / "cifar-10-batches-bin")
    assert data.fetch_dataset("cifar10", root=tmp_path / "py") == tmp_path / "py" / "cifar-10-batches-py"
    # A stray partial copy in root does not hide a complete one below it.
    (tmp_path / "bin" / TEST_BATCH).write_bytes(b"")
    assert data.fetch_dataset("cifar10", root=tmp_path / "bin") == tmp_path / "bin" / "cifar-10-batches-bin"


def test_cli_data_root_may_be_the_bin_directory_itself(tmp_path, capsys):
    _write_bin_dir(tmp_path / "cifar-10-batches-bin")
    assert main(["data", "fetch", "cifar10", "--root", str(tmp_path / "cifar-10-batches-bin")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "cifar-10-batches-bin")


# --------------------------------------------------------------------------- refusals

def _refusal(tmp_path, exception=data.DatasetFormatError) -> str:
    with pytest.raises(exception) as info:
        data.load_dataset("cifar10", root=tmp_path, val_size=0)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_file_not_a_whole_number_of_records(tmp_path):
    _write_bin_dir(tmp_path)
    path = tmp_path / TRAIN_BATCHES[2]
    path.write_bytes(path.read_bytes()[:-1])
    message = _refusal(tmp_path)
    assert str(path) in message and f"{4 * RECORD - 1:,} bytes" in message and "3,073-byte records" in message
    assert "30,730,000 bytes" in message
    path.write_bytes(b"")
    assert "0 bytes is not a positive whole number" in _refusal(tmp_path)


def test_record_count_checked(tmp_path):
    _write_bin_dir(tmp_path, per_batch=4)
    with pytest.raises(data.DatasetFormatError, match=r"data_batch_1\.bin: 4 records \(12,292 bytes\), "
                                                      r"expected 10,000 \(30,730,000 bytes\)"):
        cifar_bin.load_cifar10_bin_arrays(tmp_path, records_per_batch=10_000)
    with pytest.raises(data.DatasetFormatError, match="expected 10,000"):
        cifar_bin.read_cifar_bin_batch(tmp_path / TEST_BATCH, records=10_000)
    # Other counts are accepted, but the five training batches must agree (one truncated copy).
    path = tmp_path / TRAIN_BATCHES[3]
    path.write_bytes(path.read_bytes()[:RECORD * 3])
    message = _refusal(tmp_path)
    assert str(path) in message and "3 records, but data_batch_1.bin has 4" in message


def test_label_out_of_range(tmp_path):
    _write_bin_dir(tmp_path)
    path = tmp_path / TEST_BATCH
    raw = bytearray(path.read_bytes())
    raw[2 * RECORD] = 10
    path.write_bytes(bytes(raw))
    message = _refusal(tmp_path)
    assert message == f"{path}: record 2 has label 10, expected 0..9 (1 records out of range)"


def test_missing_batch(tmp_path):
    _write_bin_dir(tmp_path / "cifar-10-batches-bin")
    (tmp_path / "cifar-10-batches-bin" / TRAIN_BATCHES[2]).unlink()
    message = _refusal(tmp_path, FileNotFoundError)
    assert message.startswith(f"{tmp_path / 'cifar-10-batches-bin'}: CIFAR-10 binary batch data_batch_3.bin missing")
    assert "data_batch_1.bin .. data_batch_5.bin and test_batch.bin" in message
    (tmp_path / "cifar-10-batches-bin" / TEST_BATCH).unlink()
    assert "batch data_batch_3.bin, test_batch.bin missing" in _refusal(tmp_path, FileNotFoundError)
    with pytest.raises(FileNotFoundError, match="data_batch_3.bin, test_batch.bin missing"):
        cifar_bin.load_cifar10_bin_arrays(tmp_path / "cifar-10-batches-bin")
    for path in (tmp_path / "cifar-10-batches-bin").iterdir():  # an empty directory of that name
        path.unlink()
    assert "binary batch data_batch_1.bin, data_batch_2.bin" in _refusal(tmp_path, FileNotFoundError)


def test_directory_holding_neither_layout(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    message = _refusal(tmp_path, FileNotFoundError)
    for looked_for in (str(tmp_path), str(tmp_path / "cifar-10-batches-py"), str(tmp_path / "cifar-10-batches-bin"),
                       "data_batch_1 .. data_batch_5 and test_batch",
                       "data_batch_1.bin .. data_batch_5.bin and test_batch.bin",
                       str(tmp_path / "cifar-10-python.tar.gz"), "LGN_DATA_DIR", "--data-root"):
        assert looked_for in message, looked_for
    with pytest.raises(FileNotFoundError, match="holds neither CIFAR-10 layout"):
        cifar_layout.load_cifar10(tmp_path)


def test_bad_meta_file(tmp_path):
    _write_bin_dir(tmp_path)
    (tmp_path / cifar_bin.CIFAR10_BIN_META).write_text("cat\ndog\n")
    assert _refusal(tmp_path) == f"{tmp_path / 'batches.meta.txt'}: expected 10 class names, one per line, got 2"


def test_python_layout_refusals_are_format_errors_too(tmp_path):
    _write_py_dir(tmp_path)
    (tmp_path / "test_batch").write_bytes(b"not a pickle")
    assert f"{tmp_path / 'test_batch'}: unsafe or invalid pickle" in _refusal(tmp_path)


def test_cli_prints_one_line_without_traceback(tmp_path, capsys):
    _write_bin_dir(tmp_path / "data")
    path = tmp_path / "data" / TRAIN_BATCHES[0]
    path.write_bytes(path.read_bytes() + b"\x00")
    argv = ["train", "lgn_dense_s", "--dataset", "cifar10", "--data-root", str(tmp_path / "data"), "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "run1")]) == 2  # a malformed file is bad input
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"lgn-nas train: error: {path}: {4 * RECORD + 1:,} bytes is not a positive whole number")
    path.unlink()
    assert main([*argv, "--out", str(tmp_path / "run2")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "data_batch_1.bin missing" in err


# --------------------------------------------------------------------------- the real data set

@pytest.mark.skipif(not REAL_CIFAR10_BIN.is_dir(), reason=f"no binary CIFAR-10 at {REAL_CIFAR10_BIN} "
                    "(set LGN_CIFAR10_DIR to a cifar-10-batches-bin directory)")
def test_real_cifar10_binary_copy():
    for name in TRAIN_BATCHES + (TEST_BATCH,):
        assert (REAL_CIFAR10_BIN / name).stat().st_size == 30_730_000, name
    x_train, y_train, x_test, y_test, classes = cifar_bin.load_cifar10_bin_arrays(REAL_CIFAR10_BIN,
                                                                                  records_per_batch=10_000)
    assert x_train.shape == (50_000, 3, 32, 32) and x_test.shape == (10_000, 3, 32, 32)
    assert np.bincount(y_train, minlength=10).tolist() == [5_000] * 10
    assert np.bincount(y_test, minlength=10).tolist() == [1_000] * 10
    assert classes == CIFAR10_CLASSES
    # Per-channel means of the training set agree with the published statistics the spec carries.
    means = x_train.reshape(50_000, 3, -1).mean(axis=(0, 2)) / 255
    assert np.allclose(means, (0.4914, 0.4822, 0.4465), atol=0.002)
    splits = data.load_dataset("cifar10", root=REAL_CIFAR10_BIN.parent, dtype=torch.uint8, download=False)
    assert splits.train[0].shape[0] == 45_000 and splits.val[0].shape[0] == 5_000
    assert torch.equal(splits.test[0][-1], torch.from_numpy(x_test[-1]))
