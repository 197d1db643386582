"""The bad-input battery (issue 15): each user mistake ends in one clear line, exit code 2, nothing written.

``BATTERY`` is the table (name, command line, words the one error line must hold, and optionally a
setup that puts the bad input, a corrupt data file or netlist, into the directory first); add a row for
every refusal the commands learn. Each row runs ``lgn_nas.cli.main`` in a directory holding only what
its setup made (and a file ``afile``) and checks the exit code, that stderr is a single
``lgn-nas CMD: error: ...`` line and that nothing was written or changed. ``SETTINGS_BATTERY`` does the same for reruns of an existing
study with other settings, which must leave the journal file byte for byte as it was.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import struct
from pathlib import Path
from typing import List

import numpy as np
import pytest

from lgn_nas.cli import main
from lgn_nas.data.idx import write_idx

pytest.importorskip("optuna")

TINY_SEARCH = ["search", "--space", "dense", "--trials", "1", "--epochs", "1", "--limit-train", "200",
               "--val-size", "100", "--limit-test", "100", "--no-progress", "--no-export", "--sampler-seed", "0"]
TINY_BOUNDS = ["--space-arg", "width=[40,80]", "depth=[1,2]"]
TINY_TRAIN = ["train", "lgn_dense_s", "--out", "run", "--epochs", "1", "--limit-train", "200", "--val-size", "100",
              "--limit-test", "100", "--no-progress", "--model-kwargs", "depth=1", "width=100"]
SECOND_TRAIN = TINY_TRAIN[:3] + ["run2"] + TINY_TRAIN[4:]  # a second run beside ./run


# --------------------------------------------------------------------------- setups: bad files on disk

def _tiny_mnist(root: Path, **replace) -> None:
    """``root/data/mnist`` with the four IDX files (300 train, 100 test images); ``replace`` swaps files:
    a name -> an array to write instead, or raw bytes, or (another name, raw bytes)."""
    directory = root / "data" / "mnist"
    directory.mkdir(parents=True)
    rng = np.random.default_rng(0)
    files = {"train-images-idx3-ubyte": rng.integers(0, 256, (300, 28, 28), dtype=np.uint8),
             "train-labels-idx1-ubyte": np.arange(300, dtype=np.uint8) % 10,
             "t10k-images-idx3-ubyte": rng.integers(0, 256, (100, 28, 28), dtype=np.uint8),
             "t10k-labels-idx1-ubyte": np.arange(100, dtype=np.uint8) % 10}
    for name, array in files.items():
        value = replace.get(name, array)
        if isinstance(value, bytes):
            (directory / name).write_bytes(value)
        elif isinstance(value, tuple):
            (directory / value[0]).write_bytes(value[1])
        else:
            write_idx(directory / name, value)


def _idx_header(code: int, shape) -> bytes:
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)


class _Exploit:
    """Unpickling this runs a shell command: the malicious CIFAR batch."""

    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def _tiny_cifar(root: Path, broken: str = "", make=None) -> None:
    """``root/data/cifar-10-batches-py`` (4 images per batch); ``make(blob)`` replaces batch ``broken``."""
    directory = root / "data" / "cifar-10-batches-py"
    directory.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        blob = pickle.dumps({b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": [1, 2, 3, 4]})
        (directory / name).write_bytes(make(blob) if name == broken else blob)
    (directory / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"c"] * 10}))


def _tiny_cifar_bin(root: Path) -> None:
    """``root/data/cifar-10-batches-bin`` with one batch cut short."""
    directory = root / "data" / "cifar-10-batches-bin"
    directory.mkdir(parents=True)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        (directory / name).write_bytes(b"\x01" + bytes(3072))
    (directory / "data_batch_3.bin").write_bytes(b"\x01" * 100)


def _netlist_file(root: Path, edit=None) -> None:
    """``root/net.lgn``, a small real netlist; ``edit(header, tensors)`` changes it and re-signs it."""
    import timm
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    import lgn_nas
    from lgn_nas.netlist import io

    path = root / "net.lgn"
    lgn_nas.discretize(timm.create_model("lgn_dense_s", depth=1, width=100, seed=0).eval()).save(path)
    if edit is not None:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="np") as handle:
            header = json.loads(handle.metadata()[io.METADATA_KEY])
        edit(header, tensors)
        header.pop("sha256")
        header["sha256"] = io._digests(header, tensors)  # a consistent file: the reader's own checks must catch it
        save_file(tensors, str(path), metadata={io.METADATA_KEY: json.dumps(header)})


def _truncated_netlist(root: Path) -> None:
    _netlist_file(root)
    data = (root / "net.lgn").read_bytes()
    (root / "net.lgn").write_bytes(data[: len(data) // 2])


def _set_entry(tensor: str, index: int, value: int):
    def edit(header, tensors):
        tensors[tensor] = tensors[tensor].copy()
        tensors[tensor][index] = value
    return edit


_TRAINED = {}


def _trained_run(root: Path, damage: str) -> None:
    """``root/run``: a finished tiny training run (trained once per session), its checkpoint damaged
("truncated", "pickle") or intact ("")."""
    if "run" not in _TRAINED:
        import tempfile

        base = Path(tempfile.mkdtemp(prefix="lgn_bad_input_run"))
        cwd = os.getcwd()
        os.chdir(base)
        try:
            assert main(TINY_TRAIN) == 0
        finally:
            os.chdir(cwd)
        _TRAINED["run"] = base / "run"
    shutil.copytree(_TRAINED["run"], root / "run")
    checkpoint = root / "run" / "checkpoint.safetensors"
    if not damage:
        return
    if damage == "truncated":
        data = checkpoint.read_bytes()
        checkpoint.write_bytes(data[: len(data) // 3])
    else:  # a torch pickle where the safetensors file should be
        import torch

        checkpoint.unlink()
        torch.save({"model": {"w": torch.zeros(3)}}, checkpoint)


DATA = ["--data-root", "data"]
TINY_CIFAR_TRAIN = ["train", "lgn_dense_s", "--dataset", "cifar10", "--out", "run", "--epochs", "1",
                    "--limit-train", "15", "--val-size", "2", "--limit-test", "3", "--no-progress",
                    "--model-kwargs", "depth=1", "width=100"] + DATA
EXPORT_NET = ["export", "net.lgn", "--format", "c", "--out", "x.c"]

# (name, argv, substrings of the one error line[, setup(root)]). Every row: exit 2, one line, nothing written.
BATTERY = [
    ("space-arg not a range", TINY_SEARCH + ["--space-arg", "depth=abc"],
     ["depth: expected a [low, high] pair of ints", '"abc"']),
    ("space-arg one number", TINY_SEARCH + ["--space-arg", "width=50"], ["width: expected a [low, high] pair", "50"]),
    ("search --out is a file", TINY_SEARCH + TINY_BOUNDS + ["--out", "afile"],
     ["--out 'afile' exists and is not a directory"]),
    ("lr-range reversed", TINY_SEARCH + TINY_BOUNDS + ["--lr-range", "0.1", "0.01"],
     ["lr_range must be LOW HIGH with 0 < LOW <= HIGH", "0.1 0.01"]),
    ("lr-range zero", TINY_SEARCH + TINY_BOUNDS + ["--lr-range", "0", "0.1"], ["lr_range", "0.0 0.1"]),
    ("search val-size over the training set", TINY_SEARCH + TINY_BOUNDS + ["--val-size", "70000"],
     ["val_size must be an int in [0, 60000)", "70000"]),
    ("search unknown sched", TINY_SEARCH + TINY_BOUNDS + ["--sched", "nope"], ["scheduler must be one of", "'nope'"]),
    ("search max-retry negative", TINY_SEARCH + TINY_BOUNDS + ["--max-retry", "-1"], ["max_retry must be", "-1"]),
    ("search grace below heartbeat", TINY_SEARCH + TINY_BOUNDS + ["--heartbeat-interval", "10", "--grace-period", "5"],
     ["grace_period must be an int above heartbeat_interval 10", "5"]),
    ("export --synth without verilog", ["export", "lgn_dense_s", "--format", "c", "--out", "x.c", "--synth"],
     ["--synth needs --format verilog, not c"]),
    ("export into a missing directory", ["export", "lgn_dense_s", "--format", "c", "--out", "nodir/x.c"],
     ["directory 'nodir' does not exist"]),
    ("export pipeline-every negative", ["export", "lgn_dense_s", "--format", "verilog", "--out", "x.v",
                                        "--pipeline-every", "-2"], ["--pipeline-every must be an int >= 0", "-2"]),
    ("train val-size over the training set", TINY_TRAIN + ["--val-size", "70000"],
     ["val_size must be an int in [0, 60000)", "70000"]),
    ("train unknown sched", TINY_TRAIN + ["--sched", "nope"], ["scheduler must be one of", "'nope'"]),
    ("train unknown opt", TINY_TRAIN + ["--opt", "nope"], ["optimizer 'nope' is not a timm optimizer"]),
    ("train cuda without a GPU", TINY_TRAIN + ["--device", "cuda"], ["device 'cuda': CUDA is not available"]),
    ("train bad device name", TINY_TRAIN + ["--device", "gpu0"], ["device 'gpu0' is not a torch device"]),
    # model kwargs
    ("train model-kwargs unknown key", TINY_TRAIN + ["nope=1"],
     ["cannot build lgn_dense_s with model_kwargs", "'nope': 1", "unexpected keyword argument 'nope'"]),
    ("train model-kwargs bad value", TINY_TRAIN[:-2] + ["width=abc"], ["width must be a positive int", "'abc'"]),
    ("train model-kwargs not key=value", TINY_TRAIN + ["depth"], ["--model-kwargs expects key=value pairs", "'depth'"]),
    ("train candidates zero", TINY_TRAIN + ["connectivity=learnable", "candidates=0"],
     ["candidates must be a positive int", "got 0"]),
    ("train candidates above the previous width", TINY_TRAIN[:-2] + ["depth=2", "width=100", "connectivity=learnable",
                                                                    "candidates=150"],
     ["candidates=150 exceeds the 100 inputs this layer reads", "1 <= candidates <= 100"]),
    ("train candidates with fixed wiring", TINY_TRAIN + ["candidates=4"],
     ["candidates=4 needs a learnable connectivity", "connectivity 'random'"]),
    ("search candidates bound", TINY_SEARCH + ["--space-arg", "connectivity=[\"learnable\"]", "candidates=[0,8]"],
     ["candidates: expected 1 <= low <= high", "(0, 8)"]),
    ("info model-kwargs unknown key", ["info", "lgn_dense_s", "--model-kwargs", "nope=1"],
     ["cannot build lgn_dense_s with {'nope': 1}", "unexpected keyword argument 'nope'"]),
    ("info model-kwargs bad value", ["info", "lgn_dense_s", "--model-kwargs", "width=-3"],
     ["width must be a positive int", "-3"]),
    ("export model-kwargs unknown key", ["export", "lgn_dense_s", "--format", "c", "--out", "x.c", "--model-kwargs",
                                         "nope=1"], ["cannot build lgn_dense_s with {'nope': 1}", "'nope'"]),
    ("export model-kwargs bad value", ["export", "lgn_dense_s", "--format", "c", "--out", "x.c", "--model-kwargs",
                                       "depth=abc"], ["depth must be a positive int, got 'abc'"]),
    # corrupt or truncated IDX files
    ("idx bad magic", TINY_TRAIN + DATA, ["train-images-idx3-ubyte: bad IDX magic number 0x01020803"],
     lambda root: _tiny_mnist(root, **{"train-images-idx3-ubyte": b"\x01\x02\x08\x03" + bytes(100)})),
    ("idx wrong ndim", TINY_TRAIN + DATA, ["train-images-idx3-ubyte: IDX shape 300x784, expected 3 dimensions"],
     lambda root: _tiny_mnist(root, **{"train-images-idx3-ubyte": np.zeros((300, 784), np.uint8)})),
    ("idx truncated", TINY_TRAIN + DATA,
     ["train-images-idx3-ubyte: truncated: header says 300x28x28 = 235200 bytes, file has 1000"],
     lambda root: _tiny_mnist(root, **{"train-images-idx3-ubyte": _idx_header(8, (300, 28, 28)) + bytes(1000)})),
    ("idx trailing bytes", TINY_TRAIN + DATA, ["t10k-labels-idx1-ubyte: 3 trailing bytes"],
     lambda root: _tiny_mnist(root, **{"t10k-labels-idx1-ubyte": _idx_header(8, (100,)) + bytes(103)})),
    ("idx images and labels disagree", TINY_TRAIN + DATA, ["300 images but", "train-labels-idx1-ubyte has 299 labels"],
     lambda root: _tiny_mnist(root, **{"train-labels-idx1-ubyte": np.zeros(299, np.uint8)})),
    ("idx image size", TINY_TRAIN + DATA, ["training images are 1x27x28, test images 1x28x28, expected 1x28x28"],
     lambda root: _tiny_mnist(root, **{"train-images-idx3-ubyte": np.zeros((300, 27, 28), np.uint8)})),
    ("idx labels out of range", TINY_TRAIN + DATA, ["train-labels-idx1-ubyte: label 12 outside 0..9"],
     lambda root: _tiny_mnist(root, **{"train-labels-idx1-ubyte": np.full(300, 12, np.uint8)})),
    ("idx labels not uint8", TINY_TRAIN + DATA, ["train images/labels must be uint8 IDX files"],
     lambda root: _tiny_mnist(root, **{"train-labels-idx1-ubyte": np.zeros(300, np.float32)})),
    ("idx fake gzip", TINY_TRAIN + DATA, ["train-images-idx3-ubyte.gz: corrupt gzip stream"],
     lambda root: _tiny_mnist(root, **{"train-images-idx3-ubyte": ("train-images-idx3-ubyte.gz", b"\x1f\x8b" + b"x" * 50)})),
    ("idx gzip name, raw garbage", TINY_TRAIN + DATA, ["t10k-images-idx3-ubyte.gz: bad IDX magic number"],
     lambda root: _tiny_mnist(root, **{"t10k-images-idx3-ubyte": ("t10k-images-idx3-ubyte.gz", b"not gzip at all")})),
    ("search on a corrupt idx", TINY_SEARCH + TINY_BOUNDS + DATA, ["train-labels-idx1-ubyte: label 12 outside 0..9"],
     lambda root: _tiny_mnist(root, **{"train-labels-idx1-ubyte": np.full(300, 12, np.uint8)})),
    # CIFAR batches
    ("cifar truncated batch", TINY_CIFAR_TRAIN, ["data_batch_2: unsafe or invalid pickle: pickle data was truncated"],
     lambda root: _tiny_cifar(root, "data_batch_2", lambda blob: blob[:-50])),
    ("cifar malicious batch", TINY_CIFAR_TRAIN, ["data_batch_1: unsafe or invalid pickle: refusing to load global",
                                                "system"],
     lambda root: _tiny_cifar(root, "data_batch_1", lambda blob: pickle.dumps(_Exploit()))),
    ("cifar binary batch cut short", TINY_CIFAR_TRAIN,
     ["data_batch_3.bin: 100 bytes is not a positive whole number of 3,073-byte records"], _tiny_cifar_bin),
    # export of a bad netlist
    ("export truncated netlist", EXPORT_NET, ["'net.lgn' is not a readable safetensors file"], _truncated_netlist),
    ("export pickled netlist", EXPORT_NET, ["'net.lgn' is not a readable safetensors file"],
     lambda root: (root / "net.lgn").write_bytes(pickle.dumps({"gates": [1, 2]}))),
    ("export netlist of a newer version", EXPORT_NET, ["'net.lgn' was written by a newer lgn-nas (version 9)"],
     lambda root: _netlist_file(root, lambda header, tensors: header.update(version=9))),
    ("export netlist wiring out of range", EXPORT_NET,
     ["'net.lgn': layer 0: in_a[3] = 1000000 is out of range", "expected a node id in 0..783"],
     lambda root: _netlist_file(root, _set_entry("layer.0.in_a", 3, 10 ** 6))),
    ("export netlist gate id out of range", EXPORT_NET, ["'net.lgn': layer 0: gate id 16 at position 0", "0..15"],
     lambda root: _netlist_file(root, _set_entry("layer.0.gate", 0, 16))),
    ("export netlist edited after signing", EXPORT_NET, ["'net.lgn' does not match its checksum"],
     lambda root: (_netlist_file(root), _flip_last_byte(root / "net.lgn"))),
    ("export netlist unknown input domain", EXPORT_NET, ["header entry 'input_domain' = 'pixels'"],
     lambda root: _netlist_file(root, lambda header, tensors: header.update(input_domain="pixels"))),
    ("export --synth --format c of a netlist", EXPORT_NET + ["--synth"], ["--synth needs --format verilog, not c"],
     _netlist_file),
    # info / resume on a damaged checkpoint
    ("info on a truncated checkpoint", ["info", "run"],
     ["run/checkpoint.safetensors is not a readable safetensors checkpoint"],
     lambda root: _trained_run(root, "truncated")),
    ("info on a pickled checkpoint", ["info", "run"],
     ["run/checkpoint.safetensors is not a readable safetensors checkpoint", "pickle"],
     lambda root: _trained_run(root, "pickle")),
    ("resume from a truncated checkpoint", TINY_TRAIN + ["--resume"],
     ["run/checkpoint.safetensors is not a readable safetensors checkpoint"],
     lambda root: _trained_run(root, "truncated")),
    # a new run started from another run's weights, and frozen layers
    ("train initial checkpoint missing", TINY_TRAIN + ["--initial-checkpoint", "nowhere"],
     ["initial_checkpoint nowhere: no such checkpoint"]),
    ("train initial checkpoint pickled", SECOND_TRAIN + ["--initial-checkpoint", "run"],
     ["run/checkpoint.safetensors is not a readable safetensors checkpoint", "pickle"],
     lambda root: _trained_run(root, "pickle")),
    ("train initial checkpoint of another shape", SECOND_TRAIN[:-1] + ["width=120", "--initial-checkpoint", "run"],
     ["initial_checkpoint run/checkpoint.safetensors does not fit this lgn_dense_s", "size mismatch"],
     lambda root: _trained_run(root, "")),
    ("train freeze more layers than the model has", TINY_TRAIN + ["--freeze-logic-layers", "7"],
     ["cannot freeze 7 logic layers: expected an int from 0 to 1"]),
    ("train freeze a negative count", TINY_TRAIN + ["--freeze-logic-layers", "-1"],
     ["freeze_logic_layers must be an int >= 0", "-1"]),
]


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def _files(root: Path) -> List[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    err = [line for line in err if not line.startswith("lgn-nas train: lgn_dense_s recipe")]
    assert len(err) == 1, err
    assert err[0].startswith(f"lgn-nas {command}: error: "), err[0]
    return err[0]


def _contents(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("row", BATTERY, ids=[row[0] for row in BATTERY])
def test_battery(row, tmp_path, monkeypatch, capsys):
    name, argv, expected, *setup = row
    if "cuda" in argv:
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is here")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    (tmp_path / "afile").write_text("x")
    for make in setup:
        make(tmp_path)
    capsys.readouterr()
    before, contents = _files(tmp_path), _contents(tmp_path)
    assert main(argv) == 2
    line = _one_error_line(capsys, argv[0])
    for words in expected:
        assert words in line, line
    assert _files(tmp_path) == before  # nothing written: no journal, no trial directory, no output file
    assert _contents(tmp_path) == contents  # and nothing changed


def test_resume_with_a_differing_config_is_refused_untouched(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(TINY_TRAIN) == 0
    capsys.readouterr()
    run = tmp_path / "run"
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    assert main(TINY_TRAIN + ["--resume", "--seed", "1"]) == 2
    line = _one_error_line(capsys, "train")
    assert "the config differs" in line and "seed: checkpoint 0 vs now 1" in line
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert main(TINY_SEARCH + TINY_BOUNDS + ["--study", "s"]) == 0
    finally:
        os.chdir(cwd)
    return root


# (setting changed on rerun, extra flags, what the message must name)
SETTINGS_BATTERY = [
    ("epochs", ["--epochs", "2"], "epochs: stored 1, now 2"),
    ("limit-train", ["--limit-train", "300"], "limit_train: stored 200, now 300"),
    ("val-size", ["--val-size", "150"], "val_size: stored 100, now 150"),
    ("space-arg", ["--space-arg", "width=[40,90]", "depth=[1,2]"], "bounds.width: stored [40, 80], now [40, 90]"),
    ("sched", ["--sched", "none"], 'scheduler: stored "cosine", now "none"'),
    ("random-shift", ["--random-shift", "1"], "random_shift: stored 0, now 1"),
    ("batch-size", ["--batch-size", "64"], "batch_size: stored 128, now 64"),
    ("max-gates", ["--max-gates", "100"], "max_gates: stored null, now 100"),
    ("lr-range", ["--lr-range", "0.01", "0.2"], "lr_range: stored [0.01, 0.1], now [0.01, 0.2]"),
]


@pytest.mark.parametrize("name,extra,named", SETTINGS_BATTERY, ids=[row[0] for row in SETTINGS_BATTERY])
def test_rerun_with_other_settings_is_refused(name, extra, named, study_dir, monkeypatch, capsys):
    monkeypatch.chdir(study_dir)
    journal = study_dir / "lgn_nas_studies.log"
    before, files = journal.read_bytes(), _files(study_dir)
    bounds = [] if "--space-arg" in extra else TINY_BOUNDS
    argv = [a for a in TINY_SEARCH] + bounds + ["--study", "s"]
    for flag_at in [i for i, a in enumerate(extra) if a.startswith("--")]:
        flag = extra[flag_at]
        if flag in argv:  # replace the tiny run's value
            at = argv.index(flag)
            del argv[at:at + 2]
    assert main(argv + extra) == 2
    line = _one_error_line(capsys, "search")
    assert "study 's' in" in line and "was run with other settings" in line and named in line, line
    assert "rerun with the stored settings or choose a new --study name" in line
    assert journal.read_bytes() == before and _files(study_dir) == files


def test_rerun_with_the_same_settings_resumes(study_dir, monkeypatch, capsys):
    monkeypatch.chdir(study_dir)
    assert main(TINY_SEARCH + TINY_BOUNDS + ["--study", "s", "--timeout", "1"]) == 0
    assert "1 of 1 trials finished" in capsys.readouterr().out


def _damage_weights(directory: Path, how: str) -> None:
    import torch

    weights = directory / "model.safetensors"
    if how == "truncated":
        data = weights.read_bytes()
        weights.write_bytes(data[: len(data) // 2])
    elif how == "pickle named safetensors":
        torch.save({"w": torch.zeros(3)}, weights)
    elif how == "pytorch_model.bin":
        weights.unlink()
        torch.save({"w": torch.zeros(3)}, directory / "pytorch_model.bin")
    else:  # a malicious pickle
        weights.unlink()
        (directory / "pytorch_model.bin").write_bytes(pickle.dumps(_Exploit()))


# timm's local-dir: loading (a Python API, no CLI): (damage, words of the one-line ValueError)
LOCAL_DIR_BATTERY = [
    ("truncated", "model.safetensors is not a readable safetensors file (truncated, or a pickle"),
    ("pickle named safetensors", "model.safetensors is not a readable safetensors file"),
    ("pytorch_model.bin", "pytorch_model.bin is a pickle checkpoint; lgn-nas loads safetensors weights only"),
    ("malicious pickle", "pytorch_model.bin is a pickle checkpoint"),
]


@pytest.mark.parametrize("how,words", LOCAL_DIR_BATTERY, ids=[row[0] for row in LOCAL_DIR_BATTERY])
def test_local_dir_weights_are_refused_in_one_line(how, words, tmp_path, monkeypatch):
    import timm

    import lgn_nas  # noqa: F401

    monkeypatch.chdir(tmp_path)
    model = timm.create_model("lgn_dense_s", depth=1, width=100, seed=0)
    timm.models.save_for_hf(model, tmp_path / "saved", model_args={"depth": 1, "width": 100}, safe_serialization=True)
    assert timm.create_model(f"local-dir:{tmp_path / 'saved'}", pretrained=True) is not None
    _damage_weights(tmp_path / "saved", how)
    contents = _contents(tmp_path)
    with pytest.raises(ValueError) as info:
        timm.create_model(f"local-dir:{tmp_path / 'saved'}", pretrained=True)
    message = str(info.value)
    assert words in message and str(tmp_path / "saved") in message and "\n" not in message, message
    assert _contents(tmp_path) == contents  # nothing unpickled (no PWNED), nothing written
