"""The bad-input table, shared part: a row, and the world the rows point at.

Every bad input a user can give, through the command line or the library, is refused with one
line that names the argument or the file, says what was expected and what came, and (on the
command line) shows no traceback. The rows are split by layer: ``test_bad_inputs_cli.py`` holds
argument lists of ``minibasis`` (run in this process by ``cli.main``; a few also in a real
subprocess), ``test_bad_inputs_library.py`` calls. Each row names what the message must start
with (``names``: the argument, or the file, with ``{here}`` for the folder the row's setup made)
and a fragment it must contain. Add a row for every new check: one line in the list that fits.
"""

import json
import os
import pickle
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from minibasis import cli
from minibasis.files import folder_lock
from minibasis.models import create_model
from minibasis.train import TrainConfig, train
from minibasis.tree import flatten, unflatten
from support.cifar_files import make_batch, write_cifar10_archive, write_hostile_archive
from support.run_files import damage, npz_arrays

ROOT = Path(__file__).resolve().parents[2]
QUIET = dict(quiet=True, print_fn=lambda *a: None)


@dataclass(frozen=True)
class Row:
    bad: str  # the bad input, in words (the test's id)
    call: object  # world -> argv list (CLI) or the library call itself (LIBRARY)
    names: str  # what the message starts with: the argument or the file ({here}: the row's folder)
    fragment: str  # what else the message must say (LIBRARY rows: or a tuple of such)
    error: type = ValueError  # LIBRARY rows: the exception's type
    pending: str = ""  # why the row cannot pass yet: a strict xfail until that work lands (then drop it)
    subprocess: bool = False  # CLI rows: also run in a real process
    exact: bool = False  # LIBRARY rows: the message is exactly "names: fragment"


class World:
    """What the rows point at: a tiny archive, a finished run, and copies to damage."""

    def __init__(self, root):
        self.root = root
        self.archive = write_cifar10_archive(
            root / "data", train_per_class=4, test_per_class=2, seed=0
        )  # 40 / 20 images
        self.run = root / "run"  # a 2-epoch run stopped after its first epoch
        assert cli.main(["train", *self.tiny, "--epochs", "2", "--stop-after", "1", "--out", str(self.run)]) == 0
        self.here, self.count, self.locks = None, 0, []

    @property
    def tiny(self):
        """Options of a valid 1-epoch run of a plain ResNet8 on the tiny archive."""
        return [
            "--data",
            str(self.archive),
            "--model",
            "resnet8",
            "--train-size",
            "10",
            "--test-size",
            "10",
            "--epochs",
            "1",
            "--batch-size",
            "10",
            "--quiet",
        ]

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


def float64_checkpoint(arrays):
    return {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in arrays.items()}


EMPTY_BATCH = pickle.dumps({b"data": np.zeros((0, 3072), np.uint8), b"labels": []}, protocol=2)


def batch_without_class_9():
    _, _, batch = make_batch(np.random.default_rng(0), 36, labels=[i % 9 for i in range(36)])
    return pickle.dumps(batch, protocol=2)


def truncated(path):
    np.savez(path, a=np.arange(1000.0))
    path.write_bytes(path.read_bytes()[:300])


def make_world(tmp_path_factory):
    """What each table's module-scoped ``world`` fixture yields (a :class:`World`), released after."""
    w = World(tmp_path_factory.mktemp("bad"))
    yield w
    w.release()


def expected_start(row, w):
    return placed(row.names, w)


def placed(text, w):
    """``text`` with the row's folders in place of ``{here}``, ``{root}`` and ``{run}``."""
    return text.replace("{here}", str(w.here)).replace("{root}", str(w.root)).replace("{run}", str(w.run))


def params(rows):
    return [
        pytest.param(row, id=row.bad, marks=[pytest.mark.xfail(reason=row.pending, strict=True)] if row.pending else [])
        for row in rows
    ]
