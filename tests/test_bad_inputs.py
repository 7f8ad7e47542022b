"""The bad-input table (issue 12): every bad input a user can give, through the command line or
the library, is refused with one line that names the argument or the file, says what was
expected and what came, and (on the command line) shows no traceback.

Two lists of rows, one bad input each: ``CLI`` rows are argument lists of ``minibasis`` (run
in this process by ``cli.main``; a few also in a real subprocess), ``LIBRARY`` rows are calls.
Each row names what the message must start with (``names``: the argument, or the file, with
``{here}`` for the folder the row's setup made) and a fragment it must contain. Add a row for
every new check: one line in the list that fits.
"""

import json
import os
import pickle
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from minibasis import cli, runs
from minibasis.conv import conv2d, conv2d_input_grad
from minibasis.layers import batch_norm, batch_norm_state, dropout, max_pool2d
from minibasis.mode import reference_mode
from minibasis.parallel import set_threads
from minibasis.autodiff import gradient_and_aux, tree_vjp
from minibasis.files import FolderBusy, folder_lock
from minibasis.models import create_model
from minibasis.optim import cosine_lr, learning_rate, sgd_step, step_lr
from minibasis.progress import Progress
from minibasis.data import DATASETS
from minibasis.train import TrainConfig, evaluate, train
from minibasis.tree import flatten, unflatten
from minibasis.weights import load_weights, read_npz, save_weights

from cifar_files import make_batch, write_cifar10_archive, write_hostile_archive
from run_files import DAMAGES, damage, npz_arrays

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Row:
    bad: str  # the bad input, in words (the test's id)
    call: object  # world -> argv list (CLI) or the library call itself (LIBRARY)
    names: str  # what the message starts with: the argument or the file ({here}: the row's folder)
    fragment: str  # what else the message must say
    error: type = ValueError  # LIBRARY rows: the exception's type
    pending: str = ""  # why the row cannot pass yet: a strict xfail until that work lands (then drop it)
    subprocess: bool = False  # CLI rows: also run in a real process


class World:
    """What the rows point at: a tiny archive, a finished run, and copies to damage."""

    def __init__(self, root):
        self.root = root
        self.archive = write_cifar10_archive(root / "data", train_per_class=4, test_per_class=2, seed=0)  # 40 / 20 images
        self.run = root / "run"  # a 2-epoch run stopped after its first epoch
        assert cli.main(["train", *self.tiny, "--epochs", "2", "--stop-after", "1", "--out", str(self.run)]) == 0
        self.here, self.count, self.locks = None, 0, []

    @property
    def tiny(self):
        """Options of a valid 1-epoch run of a plain ResNet8 on the tiny archive."""
        return ["--data", str(self.archive), "--model", "resnet8", "--train-size", "10", "--test-size", "10",
                "--epochs", "1", "--batch-size", "10", "--quiet"]

    def folder(self):
        """A new empty folder, remembered as ``here``."""
        self.count += 1
        self.here = self.root / f"case{self.count}"
        self.here.mkdir()
        return self.here

    def copy_of_run(self):
        self.count += 1
        self.here = Path(shutil.copytree(self.run, self.root / f"case{self.count}"))
        return self.here

    def damaged(self, what):
        damage(self.copy_of_run(), what)
        return self.here

    def file(self, name, content):
        path = self.folder() / name
        content(path) if callable(content) else path.write_bytes(content)
        return path

    def locked(self):
        """A new folder whose lock this process holds until :meth:`release`."""
        lock = folder_lock(self.folder())
        lock.__enter__()
        self.locks.append(lock)
        return self.here

    def release(self):
        for lock in self.locks:
            lock.__exit__(None, None, None)

    def resnet8(self, fc64=False, nan=False, fc_shape=None, int32=False):
        """(model, params, state) of resnet8, changed as asked."""
        model = create_model("resnet8")
        params, state = model.init(0)
        fc = params["fc"]
        if fc64:
            fc["weight"] = fc["weight"].astype(np.float64)
        if nan:
            fc["bias"] = np.full_like(fc["bias"], np.nan)
        if fc_shape:
            fc["weight"] = np.zeros(fc_shape, np.float32)
        if int32:
            params = unflatten({k: v.astype(np.int32) for k, v in flatten(params).items()})
        return model, params, state

    def swap_in_other_checkpoint(self, folder):
        """Replace the checkpoint by another model's of the same epochs, and delete config.json."""
        other = self.root / "other"
        if not other.exists():
            config = TrainConfig(model="resnet14-s2u1", train_size=10, test_size=10, epochs=2, batch_size=10)
            train(config, other, data_path=self.archive, stop_after=1, **QUIET)
        shutil.copy(other / "checkpoint.npz", folder / "checkpoint.npz")
        (folder / "config.json").unlink()

    @property
    def config(self):
        return json.loads((self.run / "config.json").read_text())

    def weights_with(self, **arrays):
        """The run's state_dict with some arrays replaced."""
        with np.load(self.run / "weights.npz") as f:
            return {**{key: f[key] for key in f.files}, **arrays}

    def run_with(self, edit):
        """A copy of the run with ``edit(folder)`` applied (a hand edit)."""
        folder = self.copy_of_run()
        edit(folder)
        return folder

    def hostile(self, name, **changes):
        """A tiny archive changed as ``cifar_files.write_hostile_archive`` says, in a new folder."""
        return write_hostile_archive(self.folder(), name, **changes)

    def fifo(self):
        path = self.folder() / "cifar-10-python.tar.gz"
        os.mkfifo(path)
        return path

    def sparse(self, size):
        """A file of ``size`` bytes that takes no room (a hole)."""
        path = self.folder() / "cifar-10-python.tar.gz"
        with open(path, "wb") as f:
            f.truncate(size)
        return path

    def other_archive(self):
        return write_cifar10_archive(self.folder(), train_per_class=4, test_per_class=2, seed=1)  # other pixels

    def config_only(self, **changes):
        """A run killed before its first checkpoint (config.json and an empty log), config.json edited."""
        folder = self.folder()
        shutil.copy(self.run / "config.json", folder / "config.json")
        (folder / "log.jsonl").write_text("")
        edit_json(folder / "config.json", **changes)
        return folder

    def dangling(self):
        link = self.folder() / "out"
        link.symlink_to(self.here / "nowhere")
        return link

    def weights_beside(self, config_text):
        """A copy of the run's weights with ``config_text`` as the config.json beside them."""
        folder = self.folder()
        shutil.copy(self.run / "weights.npz", folder / "weights.npz")
        (folder / "config.json").write_text(config_text)
        return folder / "weights.npz"


def edit_json(path, **changes):
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def edit_checkpoint(folder, change):
    """Rewrite folder/checkpoint.npz with ``change(arrays)`` applied."""
    arrays = npz_arrays(folder / "checkpoint.npz")
    np.savez(folder / "checkpoint.npz", **change(arrays))


def forged(path):
    """A 300-byte .npz whose one entry declares 10¹¹ float64 values (745 GiB)."""
    np.savez(path, a=np.zeros(3))
    with zipfile.ZipFile(path) as archive:
        header = archive.read("a.npy").replace(b"(3,)", b"(100000000000,)")
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.npy", header)


def forged_entry(arrays):
    """The checkpoint's arrays with ``epoch`` replaced by an entry that declares 745 GiB."""
    return {**arrays, "model/fc.bias": np.zeros(10, np.float32)}


def float64_checkpoint(arrays):
    return {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in arrays.items()}


EMPTY_BATCH = pickle.dumps({b"data": np.zeros((0, 3072), np.uint8), b"labels": []}, protocol=2)


def batch_without_class_9():
    _, _, batch = make_batch(np.random.default_rng(0), 36, labels=[i % 9 for i in range(36)])
    return pickle.dumps(batch, protocol=2)


def truncated(path):
    np.savez(path, a=np.arange(1000.0))
    path.write_bytes(path.read_bytes()[:300])


CLI = [
    # train: values of the options
    Row("train --epochs 0", lambda w: ["train", *w.tiny, "--epochs", "0", "--out", w.folder() / "r"], "epochs", "expected an int ≥ 1, got 0"),
    Row("train --epochs x", lambda w: ["train", "--epochs", "x"], "argument --epochs", "invalid int value: 'x'", subprocess=True),
    Row("train --batch-size 0", lambda w: ["train", *w.tiny, "--batch-size", "0"], "batch_size", "expected an int ≥ 1, got 0"),
    Row("train --lr -0.1", lambda w: ["train", *w.tiny, "--lr", "-0.1"], "lr", "expected a finite real number ≥ 0, got -0.1"),
    Row("train --lr nan", lambda w: ["train", *w.tiny, "--lr", "nan"], "lr", "expected a finite real number ≥ 0, got nan"),
    Row("train --momentum -1", lambda w: ["train", *w.tiny, "--momentum", "-1"], "momentum", "expected a finite real number ≥ 0, got -1.0"),
    Row("train --weight-decay inf", lambda w: ["train", *w.tiny, "--weight-decay", "inf"], "weight_decay", "got inf"),
    Row("train --nesterov --momentum 0", lambda w: ["train", *w.tiny, "--nesterov", "--momentum", "0"], "nesterov", "expected a momentum > 0"),
    Row("train --lam -1", lambda w: ["train", *w.tiny, "--lam", "-1"], "lam", "expected a finite real number ≥ 0, got -1.0"),
    Row("train --seed -1", lambda w: ["train", *w.tiny, "--seed", "-1"], "seed", "expected an int ≥ 0, got -1"),
    Row("train --model resnet9", lambda w: ["train", *w.tiny, "--model", "resnet9"], "model", "valid model specs"),
    Row("train --schedule linear", lambda w: ["train", "--schedule", "linear"], "argument --schedule", "invalid choice: 'linear'"),
    Row("train --train-size -5", lambda w: ["train", *w.tiny, "--train-size", "-5"], "train_size", "expected an int ≥ 1, got -5"),
    Row("train --train-size 15", lambda w: ["train", *w.tiny, "--train-size", "15", "--out", w.folder() / "r"], "train_size", "expected a multiple of the 10 classes"),
    Row("train --train-size 20000", lambda w: ["train", *w.tiny, "--train-size", "20000", "--out", w.folder() / "r"], "train_size", "expected at most 40, the images there"),
    Row("train --test-size 50", lambda w: ["train", *w.tiny, "--test-size", "50", "--out", w.folder() / "r"], "test_size", "expected at most 20, the images there"),
    Row("train --stop-after 0", lambda w: ["train", *w.tiny, "--stop-after", "0"], "stop_after", "expected an int ≥ 1, got 0"),
    Row("train --progress-every -1", lambda w: ["train", *w.tiny, "--progress-every", "-1"], "progress_every", "expected a finite real number ≥ 0"),
    Row("train --device tpu", lambda w: ["train", "--device", "tpu"], "argument --device", "invalid choice: 'tpu'"),
    # train: data
    Row("train --data of a missing file", lambda w: ["train", *w.tiny, "--data", w.folder() / "no.tar.gz"], "path", "expected an existing file or folder"),
    Row("train --data that is not an archive", lambda w: ["train", *w.tiny, "--data", w.file("cifar-10-python.tar.gz", b"not a tar")], "{here}/cifar-10-python.tar.gz", ""),
    Row("train --dataset cifar100 of a CIFAR-10 archive", lambda w: ["train", *w.tiny, "--dataset", "cifar100"], "dataset", "expected a cifar100 archive, got cifar10 data"),
    # train: the run folder
    Row("train --out of a file", lambda w: ["train", *w.tiny, "--out", w.file("afile", b"mine")], "out_dir", "expected a folder for the run"),
    Row("train --out of a folder holding a run", lambda w: ["train", *w.tiny, "--out", w.copy_of_run()], "{here}", "expected a folder without a run, got one holding"),
    Row("train --out of a folder in use", lambda w: ["train", *w.tiny, "--out", w.locked()], "{here}", "expected a folder no other process is using, got one locked by PID"),
    Row("train --resume of a missing folder", lambda w: ["train", *w.tiny, "--resume", "--out", w.root / "nowhere"], "out_dir", "expected the folder of a run to resume"),
    Row("train --resume of a folder without a run", lambda w: ["train", *w.tiny, "--resume", "--out", w.folder()], "{here}", "expected a run to resume"),
    Row("train --resume --overwrite", lambda w: ["train", *w.tiny, "--resume", "--overwrite", "--out", w.copy_of_run()], "overwrite", "expected False with resume=True"),
    Row("train --resume --lr of another value", lambda w: ["train", "--data", w.archive, "--resume", "--lr", "0.3", "--out", w.copy_of_run()], "config", "got lr 0.3 (the run's: 0.1)"),
    Row("train --resume --epochs fewer than the run's", lambda w: ["train", "--data", w.archive, "--resume", "--epochs", "1", "--out", w.copy_of_run()], "epochs", "expected at least 2, the run's epochs"),
    *[Row(f"train --resume of a run with a {what}", lambda w, what=what: ["train", "--data", w.archive, "--resume", "--out", w.damaged(what)],
          f"{{here}}/{'log.jsonl' if what.startswith('log') else 'config.json' if what.startswith('config') else 'checkpoint.npz'}", "expected",
          subprocess=what == "truncated checkpoint") for what in DAMAGES],
    # eval
    Row("eval of a missing weights file", lambda w: ["eval", w.root / "no" / "weights.npz", "--data", w.archive], "weights", "expected an existing .npz weight file"),
    Row("eval of a truncated weights file", lambda w: ["eval", w.file("weights.npz", truncated), "--data", w.archive, "--model", "resnet8"], "{here}/weights.npz", "got an unreadable archive"),
    Row("eval of an empty weights file", lambda w: ["eval", w.file("weights.npz", b""), "--data", w.archive, "--model", "resnet8"], "{here}/weights.npz", "got an empty file", subprocess=True),
    Row("eval of another model's weights", lambda w: ["eval", w.run / "weights.npz", "--data", w.archive, "--model", "resnet14-s2u1"], "{run}/weights.npz", "does not fit resnet14-s2u1: missing key"),
    Row("eval with a config.json that is not JSON", lambda w: ["eval", w.weights_beside("model = resnet8"), "--data", w.archive], "{here}/config.json", "expected JSON text"),
    Row("eval without --model or config.json", lambda w: ["eval", w.file("weights.npz", (w.run / "weights.npz").read_bytes()), "--data", w.archive], "--model", "expected a model spec"),
    Row("eval --test-size -1", lambda w: ["eval", w.run / "weights.npz", "--data", w.archive, "--test-size", "-1"], "test_size", "expected an int ≥ 0, got -1"),
    Row("eval --test-size 50", lambda w: ["eval", w.run / "weights.npz", "--data", w.archive, "--test-size", "50"], "test_size", "expected at most 20"),
    Row("eval --batch-size 0", lambda w: ["eval", w.run / "weights.npz", "--data", w.archive, "--batch-size", "0"], "batch_size", "expected an int ≥ 1, got 0"),
    Row("eval --seed -1", lambda w: ["eval", w.run / "weights.npz", "--data", w.archive, "--seed", "-1"], "seed", "expected an int ≥ 0, got -1"),
    Row("eval --model bogus", lambda w: ["eval", w.run / "weights.npz", "--data", w.archive, "--model", "bogus"], "spec", "valid model specs"),
    # info
    Row("info of an unknown spec", lambda w: ["info", "resnet21"], "spec", "expected a depth 6n + 2"),
    Row("info --num-classes 0", lambda w: ["info", "resnet20", "--num-classes", "0"], "num_classes", "got 0"),
    Row("info of a 29-digit depth", lambda w: ["info", "resnet99999999999999999999992"], "spec", "a depth ≤ 1202", subprocess=True),
    Row("info of a shared resnet8", lambda w: ["info", "resnet8-s16u1"], "spec", "one block per stage: no block would use a basis"),
    Row("info of a CIFAR-100 DoubleShared", lambda w: ["info", "cifar100-resnet34-s16u1"], "spec", "variants of resnet34: original, single, shared_only, non_shared"),
    Row("info --layers without a spec", lambda w: ["info", "--layers"], "--layers", "expected a model spec to apply to"),
    Row("info --image-size 0", lambda w: ["info", "imagenet-resnet50", "--image-size", "0"], "image_size", "expected an int ≥ 1, got 0"),
    Row("train --threads 0", lambda w: ["train", *w.tiny, "--threads", "0"], "threads", "expected an int ≥ 1, got 0"),
    Row("train --model of a shared resnet8", lambda w: ["train", *w.tiny, "--model", "resnet8-s16u1"], "model", "one block per stage"),
    Row("a command that does not exist", lambda w: ["fly"], "argument {train,eval,info}", "invalid choice: 'fly'"),
    # issue 21: hangs
    Row("train --data /dev/zero", lambda w: ["train", *w.tiny, "--data", "/dev/zero", "--out", w.folder() / "r"], "path", "got /dev/zero, a device", subprocess=True),
    Row("train --data of a FIFO", lambda w: ["train", *w.tiny, "--data", w.fifo()], "path", "a FIFO", subprocess=True),
    Row("train --data of an archive over 1 GiB", lambda w: ["train", *w.tiny, "--data", w.sparse((1 << 30) + 1)], "path", "of at most 1024 MiB"),
    Row("train --data of a member declaring 512 MiB", lambda w: ["train", *w.tiny, "--data", w.hostile("huge.tar.gz", member="huge")],
        "{here}/huge.tar.gz:cifar-10-batches-py/data_batch_1", "expected a member of at most 256 MiB"),
    # issue 21: tracebacks
    Row("eval of a 300-byte .npz declaring 745 GiB", lambda w: ["eval", w.file("weights.npz", forged), "--data", w.archive, "--model", "resnet8"],
        "{here}/weights.npz", "declares shape (100000000000,) of float64 (745 GiB), more than the archive holds", subprocess=True),
    Row("train --resume of a checkpoint entry declaring 745 GiB", lambda w: ["train", "--resume", "--out", w.run_with(lambda f: forged(f / "checkpoint.npz"))],
        "{here}/checkpoint.npz", "declares shape (100000000000,)"),
    Row("train --data with label_names = 7", lambda w: ["train", *w.tiny, "--data", w.hostile("meta.tar.gz", meta=7)],
        "{here}/meta.tar.gz:cifar-10-batches-py/batches.meta['label_names']", "expected a list of 10 class names, got int 7"),
    Row("train --resume with \"model\": 5 in config.json", lambda w: ["train", "--resume", "--out", w.run_with(lambda f: edit_json(f / "config.json", model=5))],
        "{here}/config.json['model']", "spec: expected a string"),
    Row("train --resume with \"model\": 5 before a checkpoint", lambda w: ["train", "--resume", "--data", w.archive, "--out", w.config_only(model=5)],
        "{here}/config.json['model']", "spec: expected a string"),
    Row("eval beside a config.json with \"model\": 5", lambda w: ["eval", w.weights_beside(json.dumps({**w.config, "model": 5})), "--data", w.archive],
        "{here}/config.json['model']", "spec: expected a string"),
    # issue 21: silent
    Row("train --resume --data of other images", lambda w: ["train", "--resume", "--data", w.other_archive(), "--out", w.copy_of_run()],
        "data", "expected the data of the run recorded in"),
    Row("train --resume of a config.json with an extra field", lambda w: ["train", "--resume", "--out", w.run_with(lambda f: edit_json(f / "config.json", mine=1))],
        "{here}/config.json", "expected only the fields of a run's configuration, got an unknown field 'mine'"),
    Row("train --resume of a config.json with epochs edited", lambda w: ["train", "--resume", "--out", w.run_with(lambda f: edit_json(f / "config.json", epochs=5))],
        "{here}/config.json", "epochs 5 (the checkpoint's: 2)"),
    Row("train --resume of another model's checkpoint without config.json", lambda w: ["train", "--resume", "--out", w.run_with(w.swap_in_other_checkpoint)],
        "{here}/log.jsonl", "expected the records of epochs 1–1 that {here}/checkpoint.npz holds"),
    Row("train --out /", lambda w: ["train", *w.tiny, "--out", "/"], "out_dir", "not the file-system root or the home folder"),
    Row("train --out of the home folder", lambda w: ["train", *w.tiny, "--out", Path.home()], "out_dir", "not the file-system root or the home folder"),
    Row("train --model cifar100-resnet18 on CIFAR-10", lambda w: ["train", *w.tiny, "--model", "cifar100-resnet18"], "model", "expected a model for cifar10"),
    Row("train --data with 11 label_names", lambda w: ["train", *w.tiny, "--data", w.hostile("meta.tar.gz", meta=[b"c"] * 11)],
        "{here}/meta.tar.gz:cifar-10-batches-py/batches.meta['label_names']", "expected the 10 class names of cifar10, got 11 names"),
    # issue 21: unclear
    Row("train --resume of a config.json with epochs '2'", lambda w: ["train", "--resume", "--data", w.archive, "--out", w.config_only(epochs="2")],
        "{here}/config.json['epochs']", "expected an int ≥ 1, got '2'"),
    Row("train --resume of a float64 checkpoint", lambda w: ["train", "--resume", "--out", w.run_with(lambda f: edit_checkpoint(f, float64_checkpoint))],
        "{here}/checkpoint.npz", "start a fresh run from the beginning (--overwrite, or another --out)"),
    Row("train --out of a dangling symlink", lambda w: ["train", *w.tiny, "--out", w.dangling()], "out_dir", "which does not exist"),
    Row("train --lr 1e300", lambda w: ["train", *w.tiny, "--lr", "1e300", "--out", w.folder() / "r"], "non-finite", "Try a smaller learning rate (--lr 1e+300)."),
    Row("train --momentum 1e30", lambda w: ["train", *w.tiny, "--momentum", "1e30", "--batch-size", "2", "--out", w.folder() / "r"], "non-finite",
        "Momentum 1e+30 ≥ 1"),
    Row("train --lam 1e38", lambda w: ["train", *w.tiny, "--model", "resnet14-s2u1", "--lam", "1e38", "--out", w.folder() / "r"], "non-finite",
        "Try a smaller orthogonality weight (--lam 1e+38"),
    Row("train an ImageNet model at 32 px with a last batch of one", lambda w: ["train", *w.tiny, "--model", "imagenet-resnet18", "--batch-size", "9",
        "--out", w.folder() / "r"], "batch_size", "change batch_size (--batch-size) or train_size (--train-size)"),
    Row("info of a 5000-digit rank", lambda w: ["info", "resnet20-s" + "1" * 5000 + "u1"], "spec", "ranks S, U ≤ 256"),
    Row("train --data with a symbolic link member", lambda w: ["train", *w.tiny, "--data", w.hostile("a.tar.gz", member="symlink")],
        "{here}/a.tar.gz:cifar-10-batches-py/data_batch_1", "expected a regular file member, got a symbolic link"),
    Row("train --data with a hard link member", lambda w: ["train", *w.tiny, "--data", w.hostile("a.tar.gz", member="hardlink")],
        "{here}/a.tar.gz:cifar-10-batches-py/data_batch_1", "expected a regular file member, got a hard link"),
    Row("train --data with an empty batch", lambda w: ["train", *w.tiny, "--data", w.hostile("a.tar.gz", batch=b"")],
        "{here}/a.tar.gz:cifar-10-batches-py/data_batch_1", "got an empty file"),
    Row("train --data with a batch of 0 images", lambda w: ["train", *w.tiny, "--data", w.hostile("a.tar.gz", batch=EMPTY_BATCH)],
        "{here}/a.tar.gz:cifar-10-batches-py/data_batch_1", "expected at least one image, got an empty batch"),
    Row("train --data with a protocol-2 pickle of a set", lambda w: ["train", *w.tiny, "--data", w.hostile("a.tar.gz", batch=pickle.dumps({1}, protocol=2))],
        "{here}/a.tar.gz:cifar-10-batches-py/data_batch_1", "a pickle of __builtin__.set, which is not part of one"),
    Row("train --train-size with a class missing from the data", lambda w: ["train", *w.tiny, "--data", w.hostile("a.tar.gz", batch=batch_without_class_9())],
        "train_size", "labels hold only 0 images of class 9"),
]


P, G = {"w": np.zeros((2, 3))}, {"w": np.ones((2, 3))}
MEAN, STD = DATASETS["cifar10"].mean, DATASETS["cifar10"].std
QUIET = dict(quiet=True, print_fn=lambda *a: None)

X, W = np.zeros((1, 2, 5, 5)), np.zeros((3, 2, 3, 3))

LIBRARY = [
    Row("conv2d stride=1.5", lambda w: conv2d(X, W, stride=1.5), "stride", "expected an int ≥ 1 or a pair of them, got 1.5"),
    Row("conv2d stride=True", lambda w: conv2d(X, W, stride=True), "stride", "got True"),
    Row("conv2d padding=None", lambda w: conv2d(X, W, padding=None), "padding", "expected an int ≥ 0 or a pair of them, got None"),
    Row("conv2d of a 0×0 kernel", lambda w: conv2d(X, np.zeros((3, 2, 0, 0))), "w", "expected a kernel of at least 1×1"),
    Row("conv2d groups not dividing the channels", lambda w: conv2d(X, np.zeros((3, 1, 3, 3)), groups=2), "groups", "expected a divisor"),
    Row("conv2d of mixed dtypes", lambda w: conv2d(X.astype(np.float32), W), "w", "expected dtype float32 (that of x; no silent casts), got float64"),
    Row("conv2d_input_grad of a weight with other channels", lambda w: conv2d_input_grad(np.zeros((1, 3, 3, 3)), np.zeros((3, 4, 3, 3)), x_shape=(1, 2, 5, 5)), "w", "expected 2 input channels"),
    Row("create_model num_classes=True", lambda w: create_model("resnet20", num_classes=True), "num_classes", "got True"),
    Row("model.apply of another model's params", lambda w: create_model("resnet8").apply(*create_model("resnet14-s2u1").init(0), np.zeros((1, 3, 8, 8), np.float32), train=False),
        "params", "expected only the leaves of resnet8, got an unexpected leaf 'shared_basis_1_1.weight'"),
    Row("model.apply of a float64 input to float32 params", lambda w: create_model("resnet8").apply(*create_model("resnet8").init(0), np.zeros((1, 3, 8, 8)), train=False),
        "x", "cast the input with x.astype(numpy.float32)"),
    Row("load_weights of NaN weights", lambda w: load_weights(w.file("w.npz", lambda p: np.savez(p, **w.weights_with(**{"fc.bias": np.full(10, np.nan, np.float32)}))), create_model("resnet8")),
        "{here}/w.npz", "key 'fc.bias': expected finite values, got 10 NaN/inf"),
    Row("load_weights of a negative running_var", lambda w: load_weights(w.file("w.npz", lambda p: np.savez(p, **w.weights_with(**{"bn1.running_var": -np.ones(16, np.float32)}))), create_model("resnet8")),
        "{here}/w.npz", "expected a variance ≥ 0"),
    Row("load_weights of float32 and float64 arrays", lambda w: load_weights(w.file("w.npz", lambda p: np.savez(p, **w.weights_with(**{"fc.bias": np.zeros(10)}))), create_model("resnet8")),
        "{here}/w.npz", "expected one floating dtype for all arrays"),
    Row("max_pool2d padding above half the kernel", lambda w: max_pool2d(X, kernel_size=3, padding=2), "padding", "at most half the kernel"),
    Row("dropout rate=1.5", lambda w: dropout(X, rate=1.5, rng=np.random.default_rng(0)), "rate", "in [0, 1], got 1.5"),
    Row("reference_mode('yes')", lambda w: reference_mode("yes").__enter__(), "enabled", "expected True or False, got 'yes'"),
    Row("set_threads(0)", lambda w: set_threads(0), "threads", "expected an int ≥ 1, got 0"),
    Row("sgd_step lr=-1", lambda w: sgd_step(P, G, lr=-1), "lr", "expected a finite real number ≥ 0, got -1"),
    Row("sgd_step nesterov without momentum", lambda w: sgd_step(P, G, lr=0.1, momentum=0, nesterov=True), "nesterov", "momentum=0.0"),
    Row("sgd_step grads of another shape", lambda w: sgd_step(P, {"w": np.ones(3)}, lr=0.1), "grads['w']", "expected shape (2, 3)"),
    Row("sgd_step grads as a list", lambda w: sgd_step(P, [np.ones((2, 3))], lr=0.1), "grads", "got list", TypeError),
    Row("step_lr gamma=0", lambda w: step_lr(0, base_lr=0.1, epochs=3, gamma=0), "gamma", "expected a real number > 0"),
    Row("step_lr epochs as milestones", lambda w: step_lr(0, base_lr=0.1, epochs=300, milestones=(150, 225)), "milestones", "fractions"),
    Row("cosine_lr eta_min=-1", lambda w: cosine_lr(0, base_lr=0.1, epochs=3, eta_min=-1), "eta_min", "got -1"),
    Row("learning_rate of an unknown schedule", lambda w: learning_rate("linear", 0, base_lr=0.1, epochs=3), "schedule", "got 'linear'"),
    Row("TrainConfig epochs=True", lambda w: TrainConfig(epochs=True).check(), "epochs", "got True"),
    Row("TrainConfig batch_size=1.5", lambda w: TrainConfig(batch_size=1.5).check(), "batch_size", "got 1.5"),
    Row("train stop_after=0", lambda w: train(TrainConfig(), w.root / "x", stop_after=0, **QUIET), "stop_after", "got 0"),
    Row("train overwrite=1", lambda w: train(TrainConfig(), w.root / "x", overwrite=1, **QUIET), "overwrite", "expected True or False, got 1"),
    Row("train progress_every=-1", lambda w: train(TrainConfig(), w.root / "x", progress_every=-1, **QUIET), "progress_every", "got -1"),
    Row("train into a folder in use", lambda w: train(replace(TrainConfig(), model="resnet8", train_size=10, test_size=10, epochs=1, batch_size=10),
                                                      w.locked(), data_path=w.archive, **QUIET), "{here}", "locked by PID", FolderBusy),
    Row("load_checkpoint of a text file", lambda w: runs.load_checkpoint(w.file("checkpoint.npz", b"hello"), create_model("resnet8")), "{here}/checkpoint.npz", "expected a minibasis checkpoint .npz, got a file that is not a zip archive"),
    Row("read_log of a record out of order", lambda w: runs.read_log(w.file("log.jsonl", b'{"epoch": 2}\n')), "{here}/log.jsonl, line 1", "got epoch 2"),
    Row("read_config of a JSON list", lambda w: runs.read_config(w.file("config.json", b"[]")), "{here}/config.json", "expected a JSON object"),
    Row("rng_from_json of a number", lambda w: runs.rng_from_json("7", "state"), "state", "expected the JSON state of numpy's PCG64"),
    Row("read_npz of pickled objects", lambda w: read_npz(w.file("a.npz", lambda p: np.savez(p, a=np.array([{}], dtype=object)))), "{here}/a.npz", "Object arrays cannot be loaded"),
    Row("read_npz of a missing file", lambda w: read_npz(w.root / "none.npz"), "{root}/none.npz", "expected an .npz file", FileNotFoundError),
    Row("tree_vjp of a constant", lambda w: tree_vjp(lambda t: np.float64(1.0), {"w": np.ones(2)}), "fn", "expected an output that depends on the tree"),
    Row("gradient_and_aux of a vector loss", lambda w: gradient_and_aux(lambda p: (p["w"] * 2, None))({"w": np.ones(2)}), "loss_fn", "expected a scalar loss"),
    Row("Progress every=-1", lambda w: Progress("x", 3, every=-1), "every", "got -1"),
    Row("Progress total=-1", lambda w: Progress("x", -1), "total", "got -1"),
    Row("load_weights of a .npy", lambda w: load_weights(w.file("w.npz", lambda p: np.save(open(p, "wb"), np.ones(2))), create_model("resnet8")),
        "{here}/w.npz", "got a single .npy array"),
    Row("load_weights of a text file", lambda w: load_weights(w.file("w.npz", b"hello"), create_model("resnet8")), "{here}/w.npz", "got a file that is not a zip archive"),
    # issue 21
    Row("load_weights of a 300-byte .npz declaring 745 GiB", lambda w: load_weights(w.file("w.npz", forged), create_model("resnet8")),
        "{here}/w.npz", "declares shape (100000000000,)"),
    Row("evaluate of no images", lambda w: evaluate(*w.resnet8(), np.zeros((0, 3, 32, 32), np.uint8), np.zeros(0, np.int64), mean=MEAN, std=STD),
        "images", "expected at least one image to evaluate, got none"),
    Row("model.apply train='False'", lambda w: w.resnet8()[0].apply(*w.resnet8()[1:], np.zeros((1, 3, 8, 8), np.float32), train="False"),
        "train", "expected True or False, got 'False'"),
    Row("model.apply of a float64 fc.weight among float32", lambda w: w.resnet8()[0].apply(*w.resnet8(fc64=True)[1:], np.zeros((1, 3, 8, 8), np.float32), train=False),
        "params['fc.weight']", "expected dtype float32 (that of conv1.weight; float32 or float64, one for all: no silent casts), got float64"),
    Row("batch_norm train='False'", lambda w: batch_norm(np.zeros((2, 3, 2, 2)), np.ones(3), np.zeros(3), batch_norm_state(3), train="False"),
        "train", "expected True or False, got 'False'"),
    Row("batch_norm relu=1", lambda w: batch_norm(np.zeros((2, 3, 2, 2)), np.ones(3), np.zeros(3), batch_norm_state(3), train=False, relu=1),
        "relu", "expected True or False, got 1"),
    Row("model.init dtype=float16", lambda w: create_model("resnet8").init(0, dtype=np.float16), "dtype", "expected numpy.float32 or numpy.float64, got float16"),
    Row("save_weights of NaN parameters", lambda w: save_weights(w.folder() / "w.npz", *w.resnet8(nan=True)), "{here}/w.npz",
        "refusing to write weights that would not load: key 'fc.bias': expected finite values"),
    Row("create_model num_classes=10**9", lambda w: create_model("resnet8", num_classes=10**9), "num_classes", "expected an int in [1, 100000]"),
    Row("model.apply of a wrong-shape weight", lambda w: w.resnet8()[0].apply(*w.resnet8(fc_shape=(3, 3))[1:], np.zeros((1, 3, 8, 8), np.float32), train=False),
        "params['fc.weight']", "expected shape (10, 64) (the resnet8 parameter), got shape (3, 3)"),
    Row("model.apply of int32 parameters", lambda w: w.resnet8()[0].apply(*w.resnet8(int32=True)[1:], np.zeros((1, 3, 8, 8), np.float32), train=False),
        "params['conv1.weight']", "expected a floating dtype, got int32"),
    *[Row(f"model.init seed={seed!r}", lambda w, seed=seed: create_model("resnet8").init(seed), "seed", f"expected an int ≥ 0, got {seed!r}") for seed in (-1, 1.5, "0")],
    Row("save_weights of another model's params", lambda w: save_weights(w.folder() / "w.npz", create_model("resnet8"), *create_model("resnet14-s2u1").init(0)),
        "params", "expected only the leaves of resnet8"),
    Row("load_weights of a string array", lambda w: load_weights(w.file("w.npz", lambda p: np.savez(p, **w.weights_with(**{"fc.bias": np.array(["a"] * 10)}))), create_model("resnet8")),
        "{here}/w.npz", "key 'fc.bias': expected dtype float32 or float64, got <U1"),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = World(tmp_path_factory.mktemp("bad"))
    yield w
    w.release()


def expected_start(row, w):
    return placed(row.names, w)


def placed(text, w):
    """``text`` with the row's folders in place of ``{here}``, ``{root}`` and ``{run}``."""
    return text.replace("{here}", str(w.here)).replace("{root}", str(w.root)).replace("{run}", str(w.run))


def params(rows):
    return [pytest.param(row, id=row.bad, marks=[pytest.mark.xfail(reason=row.pending, strict=True)] if row.pending else [])
            for row in rows]


def test_the_table_covers_at_least_40_distinct_bad_inputs():
    bad = [row.bad for row in CLI + LIBRARY]
    assert len(set(bad)) == len(bad) >= 40


@pytest.mark.parametrize("row", params(CLI))
def test_command_line(row, world, capsys):
    argv = [str(a) for a in row.call(world)]
    try:
        code = cli.main(argv)
    except SystemExit as usage:  # argparse's errors
        code = usage.code
    out, err = capsys.readouterr()
    command = argv[0] if argv[0] in cli.COMMANDS else ""
    prefix = f"minibasis{' ' + command if command else ''}: error: "
    assert code in (1, 2) and out == "", (code, out)
    assert err.count("\n") == 1 and err.endswith("\n"), err  # one line
    assert "Traceback" not in err
    assert err.startswith(prefix + expected_start(row, world)), err
    assert placed(row.fragment, world) in err, err


@pytest.mark.parametrize("row", params([row for row in CLI if row.subprocess]))
def test_command_line_in_a_real_process(row, world):
    """The same rows through the installed entry point of a new interpreter: stderr is the one
    line, whatever Python would print around it."""
    argv = [str(a) for a in row.call(world)]
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "minibasis.cli", *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode in (1, 2) and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith(f"minibasis {argv[0]}: error: {expected_start(row, world)}") and placed(row.fragment, world) in proc.stderr


@pytest.mark.parametrize("row", params(LIBRARY))
def test_library(row, world):
    with pytest.raises(Exception) as info:
        row.call(world)
    message = str(info.value)
    assert type(info.value) is row.error, (type(info.value), message)
    assert "\n" not in message
    assert message.startswith(f"{expected_start(row, world)}: "), message
    assert placed(row.fragment, world) in message, message
