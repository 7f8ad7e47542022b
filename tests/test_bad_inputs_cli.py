"""The bad-input table, command-line rows: each an argument list of ``minibasis`` (see
``bad_inputs.py``), refused with one line on stderr and no traceback."""

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from minibasis import cli
from support.bad_inputs import (
    EMPTY_BATCH,
    ROOT,
    Row,
    batch_without_class_9,
    edit_checkpoint,
    edit_json,
    expected_start,
    float64_checkpoint,
    forged,
    make_world,
    params,
    placed,
    truncated,
)
from support.run_files import DAMAGES


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    yield from make_world(tmp_path_factory)


CLI = [
    # train: values of the options
    Row(
        "train --epochs 0",
        lambda w: ["train", *w.tiny, "--epochs", "0", "--out", w.folder() / "r"],
        "epochs",
        "expected an int ≥ 1, got 0",
    ),
    Row(
        "train --epochs x",
        lambda w: ["train", "--epochs", "x"],
        "argument --epochs",
        "invalid int value: 'x'",
        subprocess=True,
    ),
    Row(
        "train --batch-size 0",
        lambda w: ["train", *w.tiny, "--batch-size", "0"],
        "batch_size",
        "expected an int ≥ 1, got 0",
    ),
    Row(
        "train --lr -0.1",
        lambda w: ["train", *w.tiny, "--lr", "-0.1"],
        "lr",
        "expected a finite real number ≥ 0, got -0.1",
    ),
    Row(
        "train --lr nan",
        lambda w: ["train", *w.tiny, "--lr", "nan"],
        "lr",
        "expected a finite real number ≥ 0, got nan",
    ),
    Row(
        "train --momentum -1",
        lambda w: ["train", *w.tiny, "--momentum", "-1"],
        "momentum",
        "expected a finite real number ≥ 0, got -1.0",
    ),
    Row("train --weight-decay inf", lambda w: ["train", *w.tiny, "--weight-decay", "inf"], "weight_decay", "got inf"),
    Row(
        "train --nesterov --momentum 0",
        lambda w: ["train", *w.tiny, "--nesterov", "--momentum", "0"],
        "nesterov",
        "expected a momentum > 0",
    ),
    Row(
        "train --lam -1",
        lambda w: ["train", *w.tiny, "--lam", "-1"],
        "lam",
        "expected a finite real number ≥ 0, got -1.0",
    ),
    Row("train --seed -1", lambda w: ["train", *w.tiny, "--seed", "-1"], "seed", "expected an int ≥ 0, got -1"),
    Row("train --model resnet9", lambda w: ["train", *w.tiny, "--model", "resnet9"], "model", "valid model specs"),
    Row(
        "train --schedule linear",
        lambda w: ["train", "--schedule", "linear"],
        "argument --schedule",
        "invalid choice: 'linear'",
    ),
    Row(
        "train --train-size -5",
        lambda w: ["train", *w.tiny, "--train-size", "-5"],
        "train_size",
        "expected an int ≥ 1, got -5",
    ),
    Row(
        "train --train-size 15",
        lambda w: ["train", *w.tiny, "--train-size", "15", "--out", w.folder() / "r"],
        "train_size",
        "expected a multiple of the 10 classes",
    ),
    Row(
        "train --train-size 20000",
        lambda w: ["train", *w.tiny, "--train-size", "20000", "--out", w.folder() / "r"],
        "train_size",
        "expected at most 40, the images there",
    ),
    Row(
        "train --test-size 50",
        lambda w: ["train", *w.tiny, "--test-size", "50", "--out", w.folder() / "r"],
        "test_size",
        "expected at most 20, the images there",
    ),
    Row(
        "train --stop-after 0",
        lambda w: ["train", *w.tiny, "--stop-after", "0"],
        "stop_after",
        "expected an int ≥ 1, got 0",
    ),
    Row(
        "train --progress-every -1",
        lambda w: ["train", *w.tiny, "--progress-every", "-1"],
        "progress_every",
        "expected a finite real number ≥ 0",
    ),
    Row("train --device tpu", lambda w: ["train", "--device", "tpu"], "argument --device", "invalid choice: 'tpu'"),
    # train: data
    Row(
        "train --data of a missing file",
        lambda w: ["train", *w.tiny, "--data", w.folder() / "no.tar.gz"],
        "path",
        "expected an existing file or folder",
    ),
    Row(
        "train --data that is not an archive",
        lambda w: ["train", *w.tiny, "--data", w.file("cifar-10-python.tar.gz", b"not a tar")],
        "{here}/cifar-10-python.tar.gz",
        "",
    ),
    Row(
        "train --dataset cifar100 of a CIFAR-10 archive",
        lambda w: ["train", *w.tiny, "--dataset", "cifar100"],
        "dataset",
        "expected a cifar100 archive, got cifar10 data",
    ),
    # train: the run folder
    Row(
        "train --out of a file",
        lambda w: ["train", *w.tiny, "--out", w.file("afile", b"mine")],
        "out_dir",
        "expected a folder for the run",
    ),
    Row(
        "train --out of a folder holding a run",
        lambda w: ["train", *w.tiny, "--out", w.copy_of_run()],
        "{here}",
        "expected a folder without a run, got one holding",
    ),
    Row(
        "train --out of a folder in use",
        lambda w: ["train", *w.tiny, "--out", w.locked()],
        "{here}",
        "expected a folder no other process is using, got one locked by PID",
    ),
    Row(
        "train --resume of a missing folder",
        lambda w: ["train", *w.tiny, "--resume", "--out", w.root / "nowhere"],
        "out_dir",
        "expected the folder of a run to resume",
    ),
    Row(
        "train --resume of a folder without a run",
        lambda w: ["train", *w.tiny, "--resume", "--out", w.folder()],
        "{here}",
        "expected a run to resume",
    ),
    Row(
        "train --resume --overwrite",
        lambda w: ["train", *w.tiny, "--resume", "--overwrite", "--out", w.copy_of_run()],
        "overwrite",
        "expected False with resume=True",
    ),
    Row(
        "train --resume --lr of another value",
        lambda w: ["train", "--data", w.archive, "--resume", "--lr", "0.3", "--out", w.copy_of_run()],
        "config",
        "got lr 0.3 (the run's: 0.1)",
    ),
    Row(
        "train --resume --epochs fewer than the run's",
        lambda w: ["train", "--data", w.archive, "--resume", "--epochs", "1", "--out", w.copy_of_run()],
        "epochs",
        "expected at least 2, the run's epochs",
    ),
    *[
        Row(
            f"train --resume of a run with a {what}",
            lambda w, what=what: ["train", "--data", w.archive, "--resume", "--out", w.damaged(what)],
            "{here}/"
            + (
                "log.jsonl"
                if what.startswith("log")
                else "config.json"
                if what.startswith("config")
                else "checkpoint.npz"
            ),
            "expected",
            subprocess=what == "truncated checkpoint",
        )
        for what in DAMAGES
    ],
    # eval
    Row(
        "eval of a missing weights file",
        lambda w: ["eval", w.root / "no" / "weights.npz", "--data", w.archive],
        "weights",
        "expected an existing .npz weight file",
    ),
    Row(
        "eval of a truncated weights file",
        lambda w: ["eval", w.file("weights.npz", truncated), "--data", w.archive, "--model", "resnet8"],
        "{here}/weights.npz",
        "got an unreadable archive",
    ),
    Row(
        "eval of an empty weights file",
        lambda w: ["eval", w.file("weights.npz", b""), "--data", w.archive, "--model", "resnet8"],
        "{here}/weights.npz",
        "got an empty file",
        subprocess=True,
    ),
    Row(
        "eval of another model's weights",
        lambda w: ["eval", w.run / "weights.npz", "--data", w.archive, "--model", "resnet14-s2u1"],
        "{run}/weights.npz",
        "does not fit resnet14-s2u1: missing key",
    ),
    Row(
        "eval with a config.json that is not JSON",
        lambda w: ["eval", w.weights_beside("model = resnet8"), "--data", w.archive],
        "{here}/config.json",
        "expected JSON text",
    ),
    Row(
        "eval without --model or config.json",
        lambda w: ["eval", w.file("weights.npz", (w.run / "weights.npz").read_bytes()), "--data", w.archive],
        "--model",
        "expected a model spec",
    ),
    Row(
        "eval --test-size -1",
        lambda w: ["eval", w.run / "weights.npz", "--data", w.archive, "--test-size", "-1"],
        "test_size",
        "expected an int ≥ 0, got -1",
    ),
    Row(
        "eval --test-size 50",
        lambda w: ["eval", w.run / "weights.npz", "--data", w.archive, "--test-size", "50"],
        "test_size",
        "expected at most 20",
    ),
    Row(
        "eval --batch-size 0",
        lambda w: ["eval", w.run / "weights.npz", "--data", w.archive, "--batch-size", "0"],
        "batch_size",
        "expected an int ≥ 1, got 0",
    ),
    Row(
        "eval --seed -1",
        lambda w: ["eval", w.run / "weights.npz", "--data", w.archive, "--seed", "-1"],
        "seed",
        "expected an int ≥ 0, got -1",
    ),
    Row(
        "eval --model bogus",
        lambda w: ["eval", w.run / "weights.npz", "--data", w.archive, "--model", "bogus"],
        "spec",
        "valid model specs",
    ),
    # info
    Row("info of an unknown spec", lambda w: ["info", "resnet21"], "spec", "expected a depth 6n + 2"),
    Row("info --num-classes 0", lambda w: ["info", "resnet20", "--num-classes", "0"], "num_classes", "got 0"),
    Row(
        "info of a 29-digit depth",
        lambda w: ["info", "resnet99999999999999999999992"],
        "spec",
        "a depth ≤ 1202",
        subprocess=True,
    ),
    Row(
        "info of a shared resnet8",
        lambda w: ["info", "resnet8-s16u1"],
        "spec",
        "one block per stage: no block would use a basis",
    ),
    Row(
        "info of a CIFAR-100 DoubleShared",
        lambda w: ["info", "cifar100-resnet34-s16u1"],
        "spec",
        "variants of resnet34: original, single, shared_only, non_shared",
    ),
    Row(
        "info --layers without a spec", lambda w: ["info", "--layers"], "--layers", "expected a model spec to apply to"
    ),
    Row(
        "info --image-size 0",
        lambda w: ["info", "imagenet-resnet50", "--image-size", "0"],
        "image_size",
        "expected an int ≥ 1, got 0",
    ),
    Row("train --threads 0", lambda w: ["train", *w.tiny, "--threads", "0"], "threads", "expected an int ≥ 1, got 0"),
    Row(
        "train --model of a shared resnet8",
        lambda w: ["train", *w.tiny, "--model", "resnet8-s16u1"],
        "model",
        "one block per stage",
    ),
    Row(
        "a command that does not exist", lambda w: ["fly"], "argument {train,eval,info,golden}", "invalid choice: 'fly'"
    ),
    # inputs that could hang: devices, FIFOs, huge archives or members
    Row(
        "train --data /dev/zero",
        lambda w: ["train", *w.tiny, "--data", "/dev/zero", "--out", w.folder() / "r"],
        "path",
        "got /dev/zero, a device",
        subprocess=True,
    ),
    Row("train --data of a FIFO", lambda w: ["train", *w.tiny, "--data", w.fifo()], "path", "a FIFO", subprocess=True),
    Row(
        "train --data of an archive over 1 GiB",
        lambda w: ["train", *w.tiny, "--data", w.sparse((1 << 30) + 1)],
        "path",
        "of at most 1024 MiB",
    ),
    Row(
        "train --data of a member declaring 512 MiB",
        lambda w: ["train", *w.tiny, "--data", w.hostile("huge.tar.gz", member="huge")],
        "{here}/huge.tar.gz:cifar-10-batches-py/data_batch_1",
        "expected a member of at most 256 MiB",
    ),
    # inputs that could end in a traceback: forged sizes, fields of the wrong type
    Row(
        "eval of a 300-byte .npz declaring 745 GiB",
        lambda w: ["eval", w.file("weights.npz", forged), "--data", w.archive, "--model", "resnet8"],
        "{here}/weights.npz",
        "declares shape (100000000000,) of float64 (745 GiB), more than the archive holds",
        subprocess=True,
    ),
    Row(
        "train --resume of a checkpoint entry declaring 745 GiB",
        lambda w: ["train", "--resume", "--out", w.run_with(lambda f: forged(f / "checkpoint.npz"))],
        "{here}/checkpoint.npz",
        "declares shape (100000000000,)",
    ),
    Row(
        "train --data with label_names = 7",
        lambda w: ["train", *w.tiny, "--data", w.hostile("meta.tar.gz", meta=7)],
        "{here}/meta.tar.gz:cifar-10-batches-py/batches.meta['label_names']",
        "expected a list of 10 class names, got int 7",
    ),
    Row(
        'train --resume with "model": 5 in config.json',
        lambda w: ["train", "--resume", "--out", w.run_with(lambda f: edit_json(f / "config.json", model=5))],
        "{here}/config.json['model']",
        "spec: expected a string",
    ),
    Row(
        'train --resume with "model": 5 before a checkpoint',
        lambda w: ["train", "--resume", "--data", w.archive, "--out", w.config_only(model=5)],
        "{here}/config.json['model']",
        "spec: expected a string",
    ),
    Row(
        'eval beside a config.json with "model": 5',
        lambda w: ["eval", w.weights_beside(json.dumps({**w.config, "model": 5})), "--data", w.archive],
        "{here}/config.json['model']",
        "spec: expected a string",
    ),
    # inputs that could be taken silently: other data, edited run files, unsafe folders
    Row(
        "train --resume --data of other images",
        lambda w: ["train", "--resume", "--data", w.other_archive(), "--out", w.copy_of_run()],
        "data",
        "expected the data of the run recorded in",
    ),
    Row(
        "train --resume of a config.json with an extra field",
        lambda w: ["train", "--resume", "--out", w.run_with(lambda f: edit_json(f / "config.json", mine=1))],
        "{here}/config.json",
        "expected only the fields of a run's configuration, got an unknown field 'mine'",
    ),
    Row(
        "train --resume of a config.json with epochs edited",
        lambda w: ["train", "--resume", "--out", w.run_with(lambda f: edit_json(f / "config.json", epochs=5))],
        "{here}/config.json",
        "epochs 5 (the checkpoint's: 2)",
    ),
    Row(
        "train --resume of another model's checkpoint without config.json",
        lambda w: ["train", "--resume", "--out", w.run_with(w.swap_in_other_checkpoint)],
        "{here}/log.jsonl",
        "expected the records of epochs 1–1 that {here}/checkpoint.npz holds",
    ),
    Row(
        "train --out /",
        lambda w: ["train", *w.tiny, "--out", "/"],
        "out_dir",
        "not the file-system root or the home folder",
    ),
    Row(
        "train --out of the home folder",
        lambda w: ["train", *w.tiny, "--out", Path.home()],
        "out_dir",
        "not the file-system root or the home folder",
    ),
    Row(
        "train --model cifar100-resnet18 on CIFAR-10",
        lambda w: ["train", *w.tiny, "--model", "cifar100-resnet18"],
        "model",
        "expected a model for cifar10",
    ),
    Row(
        "train --data with 11 label_names",
        lambda w: ["train", *w.tiny, "--data", w.hostile("meta.tar.gz", meta=[b"c"] * 11)],
        "{here}/meta.tar.gz:cifar-10-batches-py/batches.meta['label_names']",
        "expected the 10 class names of cifar10, got 11 names",
    ),
    # inputs whose refusal must be clear: wrong types, old checkpoints, non-finite values, odd archive members
    Row(
        "train --resume of a config.json with epochs '2'",
        lambda w: ["train", "--resume", "--data", w.archive, "--out", w.config_only(epochs="2")],
        "{here}/config.json['epochs']",
        "expected an int ≥ 1, got '2'",
    ),
    Row(
        "train --resume of a float64 checkpoint",
        lambda w: ["train", "--resume", "--out", w.run_with(lambda f: edit_checkpoint(f, float64_checkpoint))],
        "{here}/checkpoint.npz",
        "start a fresh run from the beginning (--overwrite, or another --out)",
    ),
    Row(
        "train --out of a dangling symlink",
        lambda w: ["train", *w.tiny, "--out", w.dangling()],
        "out_dir",
        "which does not exist",
    ),
    Row(
        "train --lr 1e300",
        lambda w: ["train", *w.tiny, "--lr", "1e300", "--out", w.folder() / "r"],
        "non-finite",
        "Try a smaller learning rate (--lr 1e+300).",
    ),
    Row(
        "train --momentum 1e30",
        lambda w: ["train", *w.tiny, "--momentum", "1e30", "--batch-size", "2", "--out", w.folder() / "r"],
        "non-finite",
        "Momentum 1e+30 ≥ 1",
    ),
    Row(
        "train --lam 1e38",
        lambda w: ["train", *w.tiny, "--model", "resnet14-s2u1", "--lam", "1e38", "--out", w.folder() / "r"],
        "non-finite",
        "Try a smaller orthogonality weight (--lam 1e+38",
    ),
    Row(
        "train an ImageNet model at 32 px with a last batch of one",
        lambda w: ["train", *w.tiny, "--model", "imagenet-resnet18", "--batch-size", "9", "--out", w.folder() / "r"],
        "batch_size",
        "change batch_size (--batch-size) or train_size (--train-size)",
    ),
    Row("info of a 5000-digit rank", lambda w: ["info", "resnet20-s" + "1" * 5000 + "u1"], "spec", "ranks S, U ≤ 256"),
    Row(
        "train --data with a symbolic link member",
        lambda w: ["train", *w.tiny, "--data", w.hostile("a.tar.gz", member="symlink")],
        "{here}/a.tar.gz:cifar-10-batches-py/data_batch_1",
        "expected a regular file member, got a symbolic link",
    ),
    Row(
        "train --data with a hard link member",
        lambda w: ["train", *w.tiny, "--data", w.hostile("a.tar.gz", member="hardlink")],
        "{here}/a.tar.gz:cifar-10-batches-py/data_batch_1",
        "expected a regular file member, got a hard link",
    ),
    Row(
        "train --data with an empty batch",
        lambda w: ["train", *w.tiny, "--data", w.hostile("a.tar.gz", batch=b"")],
        "{here}/a.tar.gz:cifar-10-batches-py/data_batch_1",
        "got an empty file",
    ),
    Row(
        "train --data with a batch of 0 images",
        lambda w: ["train", *w.tiny, "--data", w.hostile("a.tar.gz", batch=EMPTY_BATCH)],
        "{here}/a.tar.gz:cifar-10-batches-py/data_batch_1",
        "expected at least one image, got an empty batch",
    ),
    Row(
        "train --data with a protocol-2 pickle of a set",
        lambda w: ["train", *w.tiny, "--data", w.hostile("a.tar.gz", batch=pickle.dumps({1}, protocol=2))],
        "{here}/a.tar.gz:cifar-10-batches-py/data_batch_1",
        "a pickle of __builtin__.set, which is not part of one",
    ),
    Row(
        "train --train-size with a class missing from the data",
        lambda w: ["train", *w.tiny, "--data", w.hostile("a.tar.gz", batch=batch_without_class_9())],
        "train_size",
        "labels hold only 0 images of class 9",
    ),
]


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
    proc = subprocess.run(
        [sys.executable, "-m", "minibasis.cli", *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode in (1, 2) and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert (
        proc.stderr.startswith(f"minibasis {argv[0]}: error: {expected_start(row, world)}")
        and placed(row.fragment, world) in proc.stderr
    )
