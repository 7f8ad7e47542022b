"""The bad-input table (issue 12): every bad input a user can give, through the command line or
the library, is refused with one line that names the argument or the file, says what was
expected and what came, and (on the command line) shows no traceback.

Two lists of rows, one bad input each: ``CLI`` rows are argument lists of ``minibasis`` (run
in this process by ``cli.main``; a few also in a real subprocess), ``LIBRARY`` rows are calls.
Each row names what the message must start with (``names``: the argument, or the file, with
``{here}`` for the folder the row's setup made) and a fragment it must contain. Add a row for
every new check: one line in the list that fits.
"""

import shutil
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from minibasis import cli, runs
from minibasis.conv import conv2d, conv2d_input_grad
from minibasis.layers import dropout, max_pool2d
from minibasis.mode import reference_mode
from minibasis.parallel import set_threads
from minibasis.autodiff import gradient_and_aux, tree_vjp
from minibasis.files import FolderBusy, folder_lock
from minibasis.models import create_model
from minibasis.optim import cosine_lr, learning_rate, sgd_step, step_lr
from minibasis.progress import Progress
from minibasis.train import TrainConfig, train
from minibasis.weights import load_weights, read_npz

from cifar_files import write_cifar10_archive
from run_files import DAMAGES, damage

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

    def weights_with(self, **arrays):
        """The run's state_dict with some arrays replaced."""
        with np.load(self.run / "weights.npz") as f:
            return {**{key: f[key] for key in f.files}, **arrays}

    def weights_beside(self, config_text):
        """A copy of the run's weights with ``config_text`` as the config.json beside them."""
        folder = self.folder()
        shutil.copy(self.run / "weights.npz", folder / "weights.npz")
        (folder / "config.json").write_text(config_text)
        return folder / "weights.npz"


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
    Row("a command that does not exist", lambda w: ["fly"], "argument {train,eval,info,golden}", "invalid choice: 'fly'"),
]


P, G = {"w": np.zeros((2, 3))}, {"w": np.ones((2, 3))}
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
    Row("load_weights of a string array", lambda w: load_weights(w.file("w.npz", lambda p: np.savez(p, **w.weights_with(**{"fc.bias": np.array(["a"] * 10)}))), create_model("resnet8")),
        "{here}/w.npz", "key 'fc.bias': expected dtype float32 or float64, got <U1"),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = World(tmp_path_factory.mktemp("bad"))
    yield w
    w.release()


def expected_start(row, w):
    return row.names.replace("{here}", str(w.here)).replace("{root}", str(w.root)).replace("{run}", str(w.run))


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
    assert row.fragment in err, err


@pytest.mark.parametrize("row", params([row for row in CLI if row.subprocess]))
def test_command_line_in_a_real_process(row, world):
    """The same rows through the installed entry point of a new interpreter: stderr is the one
    line, whatever Python would print around it."""
    argv = [str(a) for a in row.call(world)]
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "minibasis.cli", *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode in (1, 2) and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith(f"minibasis {argv[0]}: error: {expected_start(row, world)}") and row.fragment in proc.stderr


@pytest.mark.parametrize("row", params(LIBRARY))
def test_library(row, world):
    with pytest.raises(Exception) as info:
        row.call(world)
    message = str(info.value)
    assert type(info.value) is row.error, (type(info.value), message)
    assert "\n" not in message
    assert message.startswith(f"{expected_start(row, world)}: "), message
    assert row.fragment in message, message
