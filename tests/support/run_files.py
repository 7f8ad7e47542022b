"""Checks of what training and evaluation produce, shared by the tests: the log, ``.npz`` files,
parameter trees, and the loss and accuracy of a model computed by hand.

Written without ``minibasis.tree``, ``minibasis.data`` or ``minibasis.train``, so that a
mistake there cannot hide in the expected values.
"""

import json
import os
from pathlib import Path

import numpy as np

# Fields of a log record that measure time and so differ between otherwise identical runs.
TIMING_FIELDS = ("seconds", "images_per_second")


def read_log(run):
    """The records of ``run/log.jsonl``, one per line."""
    return [json.loads(line) for line in (Path(run) / "log.jsonl").read_text().splitlines()]


def without_timing(records):
    return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in records]


def files_of(folder):
    """``{name: bytes}`` of every file in ``folder`` but the lock file (whose content is the PID of
    the last process that locked the folder): to show that a command changed nothing."""
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir()) if p.is_file() and p.name != ".lock"}


def npz_arrays(path):
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def leaves(tree, prefix=()):
    """[(path tuple, leaf)] of a nested dict, depth first in insertion order."""
    out = []
    for key, value in tree.items():
        if isinstance(value, dict):
            out += leaves(value, prefix + (key,))
        else:
            out.append((prefix + (key,), value))
    return out


def assert_trees_equal(a, b):
    """Nested dicts of arrays with the same keys (in the same order) and leaves of the same
    dtype, shape and values (NaN equal to NaN)."""
    la, lb = leaves(a), leaves(b)
    assert [k for k, _ in la] == [k for k, _ in lb]
    for (key, x), (_, y) in zip(la, lb):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype, (key, x.dtype, y.dtype)
        assert x.shape == y.shape, (key, x.shape, y.shape)
        np.testing.assert_array_equal(x, y, err_msg=".".join(map(str, key)), strict=True)


def assert_npz_identical(a, b):
    """Two ``.npz`` files with the same names and arrays (dtype, shape, values), order aside; a
    checkpoint's ``log`` entry (the log records, JSON) compared without its timings."""
    arrays_a, arrays_b = npz_arrays(a), npz_arrays(b)
    if "log" in arrays_a and "log" in arrays_b:
        assert without_timing(json.loads(str(arrays_a.pop("log")))) == without_timing(
            json.loads(str(arrays_b.pop("log")))
        )
    assert sorted(arrays_a) == sorted(arrays_b)
    assert_trees_equal({k: arrays_a[k] for k in sorted(arrays_a)}, {k: arrays_b[k] for k in sorted(arrays_b)})


# ----------------------------------------------------------------------- damaged run folders


def damage(run, what):
    """Damage one file of the run folder ``run`` (with a checkpoint) as ``what`` says, one of
    :data:`DAMAGES`; returns the damaged file's name."""
    checkpoint = run / "checkpoint.npz"
    arrays = npz_arrays(checkpoint)
    if what == "truncated checkpoint":
        checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    elif what == "empty checkpoint":
        checkpoint.write_bytes(b"")
    elif what == "bit-flipped checkpoint":
        data = bytearray(checkpoint.read_bytes())
        data[len(data) // 2] ^= 0x08
        checkpoint.write_bytes(bytes(data))
    elif what == "checkpoint without epoch":
        np.savez(checkpoint, **{k: v for k, v in arrays.items() if k != "epoch"})
    elif what == "checkpoint epoch out of range":
        np.savez(checkpoint, **{**arrays, "epoch": np.int64(7)})
    elif what == "garbage RNG state":
        np.savez(checkpoint, **{**arrays, "rng_state": np.array("{not a state")})
    elif what == "NaN in the checkpoint":
        key = next(k for k in arrays if k.startswith("model/") and arrays[k].dtype.kind == "f")
        np.savez(checkpoint, **{**arrays, key: arrays[key] * np.nan})
    elif what == "checkpoint missing a weight":
        np.savez(checkpoint, **{k: v for k, v in arrays.items() if k != "model/fc.bias"})
    elif what == "log line without epoch":
        (run / "log.jsonl").write_text('{"train_loss": 2.3}\n')
    elif what == "log line not JSON":
        (run / "log.jsonl").write_text('{"epoch": 1, "train_loss": 2.3\n')
    elif what == "log that disagrees with the checkpoint":
        record = json.loads((run / "log.jsonl").read_text().splitlines()[0])
        (run / "log.jsonl").write_text(json.dumps({**record, "train_loss": record["train_loss"] + 1}) + "\n")
    elif what == "config not JSON":
        (run / "config.json").write_text("model: resnet8\n")
    else:
        raise AssertionError(what)
    return "log.jsonl" if what.startswith("log") else "config.json" if what.startswith("config") else "checkpoint.npz"


DAMAGES = [
    "truncated checkpoint",
    "empty checkpoint",
    "bit-flipped checkpoint",
    "checkpoint without epoch",
    "checkpoint epoch out of range",
    "garbage RNG state",
    "NaN in the checkpoint",
    "checkpoint missing a weight",
    "log line without epoch",
    "log line not JSON",
    "log that disagrees with the checkpoint",
    "config not JSON",
]


# ------------------------------------------------------------------------- evaluation by hand


def normalize_by_hand(images, mean, std):
    """uint8 (N, 3, H, W) -> float32 ``(images / 255 - mean[c]) / std[c]``."""
    x = images.astype(np.float32) / np.float32(255)
    mean = np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(std, np.float32).reshape(1, -1, 1, 1)
    return (x - mean) / std


def logits_by_hand(model, params, state, images, mean, std):
    """Eval-mode (running BN statistics) logits of the whole set at once, as float64."""
    logits, _ = model.apply(params, state, normalize_by_hand(images, mean, std), train=False)
    return np.asarray(logits, dtype=np.float64)


def loss_and_accuracy(logits, labels):
    """(mean cross-entropy via a hand-written log-softmax, fraction of argmax hits)."""
    logits = np.asarray(logits, dtype=np.float64)
    n = len(labels)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -np.mean(log_softmax[np.arange(n), labels])
    accuracy = np.sum(logits.argmax(axis=1) == labels) / n
    return float(loss), float(accuracy)


def evaluate_by_hand(model, params, state, images, labels, mean, std):
    """What ``minibasis.train.evaluate`` must return: (mean cross-entropy, accuracy)."""
    return loss_and_accuracy(logits_by_hand(model, params, state, images, mean, std), labels)


# ---- a run as a child process --------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]  # the checkout


def cli_args(config, out, archive):
    """`minibasis train` arguments that give exactly ``config``."""
    args = [
        "train",
        "--data",
        str(archive),
        "--out",
        str(out),
        "--quiet",
        "--model",
        config.model,
        "--dataset",
        config.dataset,
        "--train-size",
        str(config.train_size or 0),
        "--test-size",
        str(config.test_size or 0),
        "--epochs",
        str(config.epochs),
        "--batch-size",
        str(config.batch_size),
        "--lr",
        repr(config.lr),
        "--momentum",
        repr(config.momentum),
        "--weight-decay",
        repr(config.weight_decay),
        "--schedule",
        config.schedule,
        "--seed",
        str(config.seed),
    ]
    args += ["--nesterov"] if config.nesterov else []
    args += [] if config.augment else ["--no-augment"]
    args += [] if config.lam is None else ["--lam", repr(config.lam)]
    return args


def subprocess_env():
    """The environment of a child ``python -m minibasis.cli``: this checkout first on the path."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
