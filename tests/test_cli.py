"""Tests of the ``minibasis`` command (minibasis.cli.main): info, --help, train/eval, data errors.

``cli.main(argv)`` runs in this process and returns the exit code; stdout and stderr are
captured with ``capsys``. What only a real process shows (help text as printed, progress on a
pipe, two processes at once, Ctrl-C) runs ``python -m minibasis.cli`` in a subprocess. The
end-to-end run uses the shared CIFAR-10 subset (``../shared/data``) and is skipped where it is
absent; the other runs use a tiny archive in the official format written to a temporary folder.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from minibasis import cli, runs
from minibasis import train as T
from minibasis.data import DATASETS, load_cifar, stratified_subset
from minibasis.models import create_model
from minibasis.weights import load_weights, save_weights
from support.cifar_files import write_cifar10_archive, write_cifar100_archive
from support.run_files import assert_npz_identical, evaluate_by_hand, files_of, logits_by_hand, read_log, without_timing

ROOT = Path(__file__).resolve().parents[1]


def run(capsys, *argv):
    """(exit code, stdout, stderr) of ``minibasis ARGV``."""
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def command(*argv):
    """``python -m minibasis.cli ARGV`` of this checkout, as a subprocess argument list."""
    return [sys.executable, "-m", "minibasis.cli", *map(str, argv)]


def process_env(**extra):
    return dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])), **extra
    )


def run_process(*argv, timeout=300):
    """The finished subprocess of ``minibasis ARGV`` (stdout and stderr as text, not a terminal)."""
    return subprocess.run(
        command(*argv), cwd=ROOT, env=process_env(COLUMNS="200"), capture_output=True, text=True, timeout=timeout
    )


# ----------------------------------------------------------------------------------- info


def total_line(out, name):
    (line,) = [l for l in out.splitlines() if l.startswith(f"total {name}")]
    return line


def test_info_resnet56_s16u1(capsys):
    code, out, err = run(capsys, "info", "resnet56-s16u1")
    assert code == 0 and err == ""
    line = total_line(out, "resnet56-s16u1")
    assert "319,226" in line and "145,932,928" in line
    assert "1.16× the MACs" in out and "0.37× the parameters" in out
    assert "more MACs" in out  # sharing saves parameters, not compute
    assert "against resnet56" in out
    for stage in ("stem", "layer1", "layer2", "layer3", "head"):
        assert re.search(rf"^{stage}\s", out, re.M), stage
    assert "layer1.1.coeff_conv1" not in out  # only per stage without --layers


def test_info_resnet56(capsys):
    code, out, err = run(capsys, "info", "resnet56")
    assert code == 0 and err == ""
    line = total_line(out, "resnet56")
    assert "853,018" in line and "125,485,696" in line
    assert "1.00× the parameters, 1.00× the MACs" in out
    assert "more MACs" not in out


def test_info_layers(capsys):
    code, out, _ = run(capsys, "info", "resnet56-s16u1", "--layers")
    assert code == 0
    rows = {
        l.split()[0]: l.split()[1:]
        for l in out.splitlines()[1:]
        if l and not l.startswith(("total", "against", "note"))
    }
    for name in (
        "conv1",
        "layer1.0.conv1",
        "layer1.1.coeff_conv1",
        "layer1.1.basis_conv1",
        "shared_basis_1_1",
        "layer3.8.coeff_conv2",
        "fc",
    ):
        assert name in rows, name
    # The rows add up to the totals.
    params = sum(int(p.replace(",", "")) for p, *_ in rows.values())
    macs = sum(int(m.replace(",", "")) for _, m, *_ in rows.values())
    assert (params, macs) == (319_226, 145_932_928)
    assert "319,226" in total_line(out, "resnet56-s16u1")


def test_info_num_classes(capsys):
    code, out, _ = run(capsys, "info", "resnet56", "--num-classes", "100")
    assert code == 0
    assert f"{853_018 - 650 + 64 * 100 + 100:,}" in total_line(out, "resnet56")


def test_info_without_a_spec_lists_the_zoo_with_its_counts(capsys):
    code, out, err = run(capsys, "info")
    assert code == 0 and err == ""
    rows = {
        line.split()[0]: line.replace(",", "")
        for line in out.splitlines()
        if line.split() and line.split()[0].count("-") >= 1
    }
    for spec, params, macs in (
        ("imagenet-resnet50-shared++", 18_262_056, 4_089_184_256),
        ("cifar100-resnet34-single-s32u1", 7_726_676, 772_524_032),
        ("imagenet-mobilenetv2-shared++", 2_978_905, 313_621_120),
        ("resnet56-s16u1", 319_226, 145_932_928),
    ):
        assert str(params) in rows[spec] and str(macs) in rows[spec], rows.get(spec)


def test_info_counts_macs_at_another_image_size(capsys):
    code, out, _ = run(capsys, "info", "imagenet-resnet50-shared++", "--image-size", 64)
    assert code == 0
    assert "335,691,776" in total_line(out, "imagenet-resnet50-shared++")  # the golden file's macs_at_input
    code, _, err = run(capsys, "info", "--layers")
    assert code == 1 and err.startswith("minibasis info: error: --layers: expected a model spec")


@pytest.mark.parametrize("spec", ["resnet9", "resnet56-x", "vgg16"])
def test_info_invalid_spec(capsys, spec):
    code, out, err = run(capsys, "info", spec)
    assert code == 1
    assert out == ""
    assert err.startswith("minibasis info: error:")
    assert spec in err and "valid model specs" in err and "resnet56-s16u1" in err
    assert "Traceback" not in err


# ----------------------------------------------------------------------------------- help


@pytest.mark.parametrize(
    "argv, expected",
    [
        ([], ["train", "eval", "info"]),
        (
            ["train"],
            [
                "--model",
                "--data",
                "--download",
                "--train-size",
                "--test-size",
                "--epochs",
                "--batch-size",
                "--lr",
                "--lam",
                "--schedule",
                "--seed",
                "--out",
                "--resume",
                "--stop-after",
                "--quiet",
                "valid model specs",
            ],
        ),
        (["eval"], ["weights", "--model", "--data", "--test-size", "--seed", "--batch-size"]),
        (["info"], ["spec", "--layers", "--num-classes"]),
    ],
)
def test_help(capsys, argv, expected):
    with pytest.raises(SystemExit) as info:
        cli.main([*argv, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: minibasis {' '.join(argv)}".rstrip())
    for word in expected:
        assert word in out, word


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert (
        err
        == "minibasis: error: the following arguments are required: {train,eval,info,golden} (see minibasis --help)\n"
    )


def help_entries(text):
    """{option strings: its help, on one line} of an argparse help text."""
    entries, current = {}, None
    for line in text.split("options:", 1)[1].splitlines():
        if re.match(r"^  -", line):
            current = line.strip()
            entries[current] = ""
        elif current and line.startswith("   "):
            entries[current] += " " + line.strip()
    return {
        key.split("  ")[0]: " ".join((key.split("  ", 1)[1:] or [""])[0].split() + value.split())
        for key, value in entries.items()
    }


@pytest.mark.parametrize(
    "sub, expected",
    [
        (
            "train",
            {
                "--model": "resnet20-s16u1",
                "--train-size": "2000",
                "--test-size": "1000",
                "--epochs": "5",
                "--batch-size": "128",
                "--lr": "0.1",
                "--momentum": "0.9",
                "--weight-decay": "0.0005",
                "--seed": "0",
                "--schedule": "step",
                "--out": "runs/MODEL",
                "--progress-every": "5.0",
                "--device": "cpu",
                "--dataset": "cifar10",
                "--lam": "10 for the shared variants, 0 for the original and NonShared",
            },
        ),
        ("eval", {"--test-size": "0", "--batch-size": "500", "--progress-every": "5.0", "--dataset": "cifar10"}),
        (
            "info",
            {
                "--num-classes": "10, 100 or 1000 by the spec's dataset",
                "--image-size": "32 for CIFAR, 224 for ImageNet",
            },
        ),
    ],
)
def test_help_shows_every_default(sub, expected):
    """Every option's help ends with its default, ``(default: …)``, and train's --schedule help
    states the step schedule's rule."""
    proc = run_process(sub, "--help")
    assert proc.returncode == 0, proc.stderr
    entries = help_entries(proc.stdout)
    assert len(entries) >= len(expected) + 1
    for option, text in entries.items():
        if option != "-h, --help":
            assert "(default: " in text, (option, text)
    for option, value in expected.items():
        (text,) = [t for o, t in entries.items() if o.split(" ")[0].rstrip(",") == option]
        assert text.endswith(f"(default: {value})"), (option, text)
    if sub == "train":  # the schedule's rule is stated where the option is
        (schedule,) = [t for o, t in entries.items() if o.startswith("--schedule")]
        assert "ceil(E/2)" in schedule and "150 and 225 of 300" in schedule and "first epoch always at --lr" in schedule


def test_console_script():
    exe = shutil.which("minibasis")
    if exe is None:
        pytest.skip("the minibasis console script is not installed")
    proc = subprocess.run([exe, "info", "resnet20"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "total resnet20" in proc.stdout
    proc = subprocess.run([exe, "info", "resnet21"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "valid model specs" in proc.stderr


# ---------------------------------------------------------------------------- train / eval


@pytest.mark.slow
def test_train_then_eval_end_to_end(shared_archive, tmp_path, capsys):
    """A real run, then eval of its weights: a 1,000-image stratified subset of the shared CIFAR-10
    archive, 2 epochs; the folder holds the four run files, and config.json records λ and the data."""
    out = tmp_path / "run"
    code, stdout, err = run(
        capsys,
        "train",
        "--data",
        shared_archive,
        "--model",
        "resnet8",
        "--train-size",
        1000,
        "--test-size",
        100,
        "--epochs",
        2,
        "--batch-size",
        50,
        "--out",
        out,
        "--quiet",
    )
    assert code == 0, err
    assert err == ""  # --quiet: no progress bar
    assert f"run folder: {out} (config.json, log.jsonl, weights.npz, checkpoint.npz); 2 of 2 epochs done\n" in stdout
    assert len(re.findall(r"^epoch +\d/2 ", stdout, re.M)) == 2
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.npz", "config.json", "log.jsonl", "weights.npz"]

    records = [json.loads(l) for l in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(np.isfinite(r["train_loss"]) and np.isfinite(r["test_loss"]) for r in records)
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "resnet8" and config["train_size"] == 1000 and config["test_size"] == 100
    assert config["lam"] == 0.0 and all(r["lam"] == 0.0 for r in records)  # the λ used: resnet8 has no bases
    assert (
        config["data"]["path"] == str(shared_archive.absolute())
        and config["data"]["bytes"] == shared_archive.stat().st_size
    )
    model = create_model("resnet8")
    assert runs.load_checkpoint(out / "checkpoint.npz", model).epoch == 2
    load_weights(out / "weights.npz", model)

    code, stdout, err = run(capsys, "eval", out / "weights.npz", "--data", shared_archive, "--test-size", 100)
    assert code == 0, err
    (line,) = stdout.splitlines()
    result = json.loads(line)
    assert result["model"] == "resnet8" and result["images"] == 100
    assert result["test_acc"] == records[-1]["test_acc"]  # the same subset: the run's seed + 1
    assert result["test_loss"] == pytest.approx(records[-1]["test_loss"], rel=1e-6)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A saved resnet8 (untrained, running statistics and fc perturbed) with config.json (seed 4) and a tiny archive."""
    root = tmp_path_factory.mktemp("tiny")
    # 20 training and 30 test images (2 and 3 per class), seed 0.
    archive = write_cifar10_archive(root / "data", train_per_class=2, test_per_class=3, seed=0)
    model = create_model("resnet8")
    params, state = model.init(0)
    state = {**state, "bn1": {**state["bn1"], "running_mean": np.full_like(state["bn1"]["running_mean"], 0.3)}}
    # An untrained network predicts one class for every noise image, and then any rule (argmax,
    # argmin, ...) scores 1/10 on balanced labels. Through the linear fc layer, standardise each
    # logit over the test images, so that the predictions vary from image to image.
    spec, test_images = DATASETS["cifar10"], load_cifar(archive).test_images
    logits = logits_by_hand(model, params, state, test_images, spec.mean, spec.std)
    scale = 1 / logits.std(axis=0)
    params = {
        **params,
        "fc": {
            "weight": (params["fc"]["weight"] * scale[:, None]).astype(np.float32),
            "bias": ((params["fc"]["bias"] - logits.mean(axis=0)) * scale).astype(np.float32),
        },
    }
    predicted = logits_by_hand(model, params, state, test_images, spec.mean, spec.std).argmax(axis=1)
    assert len(set(predicted.tolist())) >= 4, predicted
    weights = save_weights(root / "run" / "weights.npz", model, params, state)
    config = T.TrainConfig(model="resnet8", seed=4)
    (root / "run" / "config.json").write_text(json.dumps(T.asdict(config)))
    return archive, weights, model, params, state


def expected_eval(archive, model, params, state, test_size, seed):
    """(number of images, (loss, accuracy) computed by hand) of the subset stratified_subset picks."""
    data = load_cifar(archive)
    images, labels = data.test_images, data.test_labels
    if test_size:
        index = stratified_subset(labels, test_size, seed=seed)
        images, labels = images[index], labels[index]
    spec = DATASETS["cifar10"]
    return len(labels), evaluate_by_hand(model, params, state, images, labels, spec.mean, spec.std)


@pytest.mark.parametrize(
    "extra, test_size, seed",
    [
        ([], 0, None),  # the whole test set
        (["--test-size", 10], 10, 5),  # default seed: config.json's seed + 1
        (["--test-size", 10, "--seed", 9], 10, 9),
        (["--test-size", 20, "--model", "resnet8", "--batch-size", 3], 20, 5),
    ],
)
def test_eval_on_tiny_archive(capsys, tiny_run, extra, test_size, seed):
    archive, weights, model, params, state = tiny_run
    code, out, err = run(capsys, "eval", weights, "--data", archive, *extra)
    assert code == 0, err
    result = json.loads(out)
    n, (loss, acc) = expected_eval(archive, model, params, state, test_size, seed)
    assert result["images"] == n == (test_size or 30)
    assert result["test_acc"] == acc
    assert result["test_loss"] == pytest.approx(loss, rel=1e-6)


def test_eval_errors(capsys, tiny_run, tmp_path):
    archive, weights, *_ = tiny_run
    code, _, err = run(capsys, "eval", weights, "--data", archive, "--model", "resnet14-s2u1")
    assert code == 1 and "minibasis eval: error:" in err and "missing key" in err
    lone = tmp_path / "lone.npz"
    shutil.copy(weights, lone)  # no config.json beside it
    code, _, err = run(capsys, "eval", lone, "--data", archive)
    assert code == 1 and "--model" in err
    code, out, err = run(capsys, "eval", lone, "--data", archive, "--model", "resnet8", "--test-size", 10, "--seed", 5)
    assert code == 0, err


def test_eval_missing_weights_file(capsys, tiny_run, tmp_path):
    archive, *_ = tiny_run
    missing = tmp_path / "runs" / "typo" / "weights.npz"
    code, _, err = run(capsys, "eval", missing, "--data", archive, "--model", "resnet8")
    assert code == 1 and str(missing) in err
    # Without --model the complaint must still be the missing file, not a missing --model.
    code, _, err = run(capsys, "eval", missing, "--data", archive)
    assert code == 1 and str(missing) in err
    assert re.search(r"no such file|does not exist|not found|expected an existing", err), err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--epochs", "0"], "epochs: expected an int ≥ 1, got 0"),
        (["--batch-size", "0"], "batch_size: expected an int ≥ 1, got 0"),
        (["--lam", "-1"], "lam: expected a finite real number ≥ 0, got -1.0"),
        (["--stop-after", "0"], "stop_after: expected an int ≥ 1, got 0"),
        (["--model", "resnet9"], "model: "),
    ],
)
def test_train_bad_values(capsys, tmp_path, argv, message):
    out = tmp_path / "run"
    code, stdout, err = run(capsys, "train", "--data", tmp_path / "nothing-here.tar.gz", "--out", out, *argv)
    assert code == 1 and stdout == ""
    assert err.startswith(f"minibasis train: error: {message}") and err.count("\n") == 1, err
    assert not out.exists()  # checked before anything is written or read


def test_train_size_not_a_multiple_of_the_classes(capsys, tiny_run, tmp_path):
    archive, *_ = tiny_run
    code, _, err = run(
        capsys,
        "train",
        "--data",
        archive,
        "--model",
        "resnet8",
        "--train-size",
        15,
        "--epochs",
        1,
        "--out",
        tmp_path / "run",
        "--quiet",
    )
    assert code == 1 and err.startswith("minibasis train: error:")
    assert "15" in err and "multiple" in err and "Traceback" not in err


def test_train_on_tiny_archive_then_resume(capsys, tiny_run, tmp_path):
    """train --stop-after 1, then --resume: log and files as an uninterrupted 2-epoch run."""
    archive, *_ = tiny_run
    common = [
        "train",
        "--data",
        archive,
        "--model",
        "resnet8",
        "--train-size",
        10,
        "--test-size",
        10,
        "--epochs",
        2,
        "--batch-size",
        10,
        "--quiet",
    ]
    code, stdout, err = run(capsys, *common, "--out", tmp_path / "a", "--stop-after", 1)
    assert code == 0, err
    assert len(re.findall(r"^epoch ", stdout, re.M)) == 1
    code, stdout, err = run(capsys, *common, "--out", tmp_path / "a", "--resume")
    assert code == 0, err
    assert re.findall(r"^epoch +(\d)/2", stdout, re.M) == ["2"]
    code, _, err = run(capsys, *common, "--out", tmp_path / "b")
    assert code == 0, err
    for name in ("weights.npz", "checkpoint.npz"):
        assert_npz_identical(tmp_path / "a" / name, tmp_path / "b" / name)
    logs = [without_timing(read_log(tmp_path / d)) for d in "ab"]
    assert logs[0] == logs[1] and len(logs[0]) == 2
    # Resuming with another option names it; options not given are the run's.
    code, _, err = run(capsys, *common, "--out", tmp_path / "a", "--resume", "--lr", 0.2)
    assert code == 1 and "got lr 0.2 (the run's: 0.1)" in err
    code, stdout, err = run(capsys, "train", "--data", archive, "--out", tmp_path / "a", "--resume")
    assert code == 0, err
    assert "already complete (2 of 2 epochs)" in stdout


# ----------------------------------------------------------------------------- data errors


def test_data_path_does_not_exist(capsys, tmp_path):
    missing = tmp_path / "nowhere" / "cifar-10-python.tar.gz"
    code, stdout, err = run(capsys, "train", "--data", missing, "--model", "resnet8", "--out", tmp_path / "run")
    assert code == 1
    assert err.startswith("minibasis train: error:")
    assert str(missing) in err and "no such file" in err
    assert "Traceback" not in err
    assert "run folder" not in stdout


def test_no_data_and_empty_cache(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    for argv in (
        ["train", "--model", "resnet8", "--out", tmp_path / "run"],
        ["train", "--model", "resnet8"],
    ):  # default run folder, under the cwd (tmp_path)
        code, _, err = run(capsys, *argv)
        assert code == 1
        assert err.startswith("minibasis train: error:")
        assert str(tmp_path / "cache" / "minibasis") in err  # where it looked
        assert "--data" in err and "--download" in err  # how to point at a local archive, or fetch it
        assert "cifar-10-python.tar.gz" in err
    assert not (tmp_path / "cache" / "minibasis").exists() or not any((tmp_path / "cache" / "minibasis").iterdir())

    weights = tmp_path / "w.npz"
    model = create_model("resnet8")
    save_weights(weights, model, *model.init(0))
    code, _, err = run(capsys, "eval", weights, "--model", "resnet8")
    assert code == 1 and err.startswith("minibasis eval: error:") and "--data" in err and "--download" in err


def test_data_path_is_not_cifar(capsys, tmp_path):
    bogus = tmp_path / "cifar-10-python.tar.gz"
    bogus.write_bytes(b"not a tar archive at all")
    code, _, err = run(capsys, "train", "--data", bogus, "--model", "resnet8", "--out", tmp_path / "run")
    assert code == 1 and str(bogus) in err and "Traceback" not in err


# ------------------------------------------------------------- what a real process shows

TINY_TRAIN = ["--model", "resnet8", "--train-size", 20, "--test-size", 10, "--batch-size", 10]


def test_progress_lines_when_stderr_is_not_a_terminal(tiny_run, tmp_path):
    """Piped, train and eval print plain progress lines (images done, img/s, ETA) as batches end,
    not only when an epoch (train) or the whole evaluation (eval) ends; --quiet prints none."""
    archive, *_ = tiny_run
    out = tmp_path / "run"
    proc = run_process("train", "--data", archive, *TINY_TRAIN, "--epochs", 1, "--out", out, "--progress-every", 0)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert "\r" not in proc.stderr  # no bar: stderr is a pipe
    assert [
        line
        for line in lines
        if re.fullmatch(
            r"epoch 1/1: (10|20)/20 images, \d+ img/s, ETA \d+:\d\d, run ETA \d+:\d\d, "
            r"loss \d+\.\d{4}",
            line,
        )
    ], lines
    assert [
        line
        for line in lines
        if re.fullmatch(r"epoch 1/1 test: 10/10 images, \d+ img/s, ETA \d+:\d\d, run ETA \d+:\d\d", line)
    ], lines
    assert len(lines) == 3, lines  # one per batch with --progress-every 0: 2 training batches, 1 test batch

    proc = run_process("eval", out / "weights.npz", "--data", archive, "--batch-size", 10, "--progress-every", 0)
    assert proc.returncode == 0, proc.stderr
    assert [
        re.fullmatch(r"eval: (\d+)/30 images, \d+ img/s, ETA \d+:\d\d", line).group(1)
        for line in proc.stderr.splitlines()
    ] == ["10", "20", "30"]
    assert json.loads(proc.stdout)["images"] == 30

    proc = run_process("eval", out / "weights.npz", "--data", archive, "--batch-size", 10, "--quiet")
    assert proc.returncode == 0 and proc.stderr == ""


def test_a_one_epoch_run_trains_at_the_given_lr(tiny_run, tmp_path):
    """On the command line, --epochs 1 trains its only epoch at --lr, never at a decayed rate."""
    archive, *_ = tiny_run
    proc = run_process(
        "train", "--data", archive, *TINY_TRAIN, "--epochs", 1, "--lr", 0.05, "--out", tmp_path / "run", "--quiet"
    )
    assert proc.returncode == 0, proc.stderr
    assert [r["lr"] for r in read_log(tmp_path / "run")] == [0.05]
    assert re.search(r"^epoch +1/1 .* lr 0\.05 ", proc.stdout, re.M), proc.stdout


def test_extending_a_finished_run_on_the_command_line(tiny_run, tmp_path):
    """`--resume` on a finished run says it is complete and changes nothing; `--resume
    --epochs 3` extends it (the options not given are the run's), says what it does to the
    schedule, and records it in config.json and the log."""
    archive, *_ = tiny_run
    out = tmp_path / "run"
    proc = run_process("train", "--data", archive, *TINY_TRAIN, "--epochs", 2, "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    before = files_of(out)

    proc = run_process("train", "--data", archive, "--out", out, "--resume", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert f"{out}: the run is already complete (2 of 2 epochs); nothing to train." in proc.stdout
    assert files_of(out) == before

    proc = run_process("train", "--data", archive, "--out", out, "--resume", "--epochs", 3, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert (
        "extending the run from 2 to 3 epochs: epochs 3–3 follow the step schedule of a 3-epoch run (lr 0.01)"
        in proc.stdout
    )
    assert re.findall(r"^epoch +(\d)/3", proc.stdout, re.M) == ["3"]
    assert "3 of 3 epochs done" in proc.stdout
    config = json.loads((out / "config.json").read_text())
    assert config["epochs"] == 3 and config["extensions"] == [{"at_epoch": 2, "from_epochs": 2, "to_epochs": 3}]
    assert [(r["epoch"], r["epochs"], r["lr"]) for r in read_log(out)] == [
        (1, 2, 0.1),
        (2, 2, 0.1 * 0.1**1),
        (3, 3, 0.1 * 0.1**1),
    ]

    proc = run_process("train", "--data", archive, "--out", out, "--resume", "--epochs", 2, "--quiet")
    assert proc.returncode == 1 and proc.stderr.startswith("minibasis train: error: epochs: expected at least 3")


def wait_for(path, proc, timeout=120):
    start = time.monotonic()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - start < timeout, f"{path} did not appear"
        time.sleep(0.05)


def test_two_processes_cannot_train_into_one_folder_and_ctrl_c_is_one_line(tiny_run, tmp_path):
    """With two real processes: while A trains into a folder, B (another model, fresh) fails at
    once naming the folder and A's PID, and A's run stays whole. Then Ctrl-C stops A with one
    line saying where its last checkpoint is, and the run resumes."""
    archive, *_ = tiny_run
    out = tmp_path / "run"
    a = subprocess.Popen(
        command("train", "--data", archive, *TINY_TRAIN, "--epochs", 200, "--out", out, "--quiet"),
        cwd=ROOT,
        env=process_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(out / "checkpoint.npz", a)
        b = run_process(
            "train",
            "--data",
            archive,
            "--model",
            "resnet14-s2u1",
            "--train-size",
            10,
            "--test-size",
            10,
            "--out",
            out,
            "--overwrite",
            "--quiet",
        )
        assert a.poll() is None, "A ended before B tried: the test did not test anything"
        assert b.returncode == 1
        assert (
            b.stderr == f"minibasis train: error: {out}: expected a folder no other process is using, "
            f"got one locked by PID {a.pid}\n"
        )
        assert json.loads((out / "config.json").read_text())["model"] == "resnet8"  # A's, untouched by B
    finally:
        a.send_signal(signal.SIGINT)
        stdout, stderr = a.communicate(timeout=120)
    assert a.returncode == 130, stderr
    epoch = runs.load_checkpoint(out / "checkpoint.npz", create_model("resnet8")).epoch
    assert stderr == (
        f"minibasis train: interrupted. The last checkpoint, {out / 'checkpoint.npz'}, holds epoch {epoch}. "
        f"Continue with: minibasis train --resume --out {out}\n"
    )
    assert "Traceback" not in stderr
    assert len(re.findall(r"^epoch ", stdout, re.M)) in (
        epoch - 1,
        epoch,
    )  # the signal may come between a checkpoint and its line
    assert not runs.stale_temp_files(out)
    code = cli.main(["train", "--data", str(archive), "--out", str(out), "--resume", "--stop-after", "1", "--quiet"])
    assert code == 0
    assert runs.load_checkpoint(out / "checkpoint.npz", create_model("resnet8")).epoch == epoch + 1
    assert [r["epoch"] for r in read_log(out)] == list(range(1, epoch + 2))


# ----------------------------------------------------------------------------- the zoo, threads


@pytest.mark.slow
def test_train_and_eval_a_cifar100_model_on_the_official_cifar100_layout(tmp_path, capsys):
    """The CIFAR-100 SingleShared ResNet34 of the paper on a tiny archive in the official
    ``cifar-100-python`` layout (100 training and 100 test images): one epoch, then eval."""
    archive = write_cifar100_archive(tmp_path / "data", train_per_class=1, test_per_class=1, seed=0)
    out = tmp_path / "run"
    code, stdout, err = run(
        capsys,
        "train",
        "--dataset",
        "cifar100",
        "--model",
        "cifar100-resnet34-single-s32u1",
        "--data",
        archive,
        "--train-size",
        0,
        "--test-size",
        0,
        "--epochs",
        1,
        "--batch-size",
        50,
        "--out",
        out,
        "--quiet",
    )
    assert code == 0, err
    (record,) = read_log(out)
    assert record["epoch"] == 1 and 0 <= record["test_acc"] <= 1 and record["orthogonality"] > 0
    model = create_model("cifar100-resnet34-single-s32u1")
    assert model.spec.num_classes == 100
    with np.load(out / "weights.npz") as f:
        assert f["fc.weight"].shape == (100, 512) and "layer3.5.shared_basis.weight" in f.files
    load_weights(out / "weights.npz", model)
    code, stdout, err = run(capsys, "eval", out / "weights.npz", "--dataset", "cifar100", "--data", archive, "--quiet")
    assert code == 0, err
    assert json.loads(stdout)["test_acc"] == pytest.approx(record["test_acc"])


@pytest.mark.parametrize("columns", ["60", "73", "101"])
@pytest.mark.parametrize("command", ["train", "info"])
def test_help_never_breaks_a_spec_name_at_its_hyphens(monkeypatch, command, columns):
    """At any terminal width, help keeps each spec name whole ('cifar100-resnet34-single-s32u1'
    is never wrapped after 'cifar100-'): no help line ends with a hyphen."""
    monkeypatch.setenv("COLUMNS", columns)
    text = cli.build_parser()._subparsers._group_actions[0].choices[command].format_help()
    assert not [line for line in text.splitlines() if line.rstrip().endswith("-")]
    for spec in (
        "cifar100-resnet34-single-s16u1",
        "cifar100-densenet121-single-s16u1",
        "cifar100-resnext50-single-s64u4",
        "cifar100-mobilenetv2-shared++",
        "imagenet-resnet34-s48u1",
    ):
        assert spec in text


@pytest.mark.slow
def test_train_a_shared_densenet121_on_the_official_cifar100_layout(tmp_path, capsys):
    """DenseNet121_SingleShared(16, 1) on the tiny archive: one step of 100 images, its
    regulariser in the log, the authors' keys in the weights (the first dense layer owns the basis)."""
    archive = write_cifar100_archive(tmp_path / "data", train_per_class=1, test_per_class=1, seed=0)
    out = tmp_path / "run"
    code, stdout, err = run(
        capsys,
        "train",
        "--dataset",
        "cifar100",
        "--model",
        "cifar100-densenet121-single-s16u1",
        "--data",
        archive,
        "--train-size",
        0,
        "--test-size",
        0,
        "--epochs",
        1,
        "--batch-size",
        100,
        "--out",
        out,
        "--quiet",
    )
    assert code == 0, err
    (record,) = read_log(out)
    assert record["epoch"] == 1 and 0 <= record["test_acc"] <= 1 and record["orthogonality"] > 0
    with np.load(out / "weights.npz") as f:
        assert f["linear.weight"].shape == (100, 1024)
        last_layer = "features.dense_block_layer_3.bottle_neck_layer_15"
        assert np.array_equal(f["shared_basis_3.weight"], f[f"{last_layer}.shared_basis.weight"])
    load_weights(out / "weights.npz", create_model("cifar100-densenet121-single-s16u1"))


def test_runs_are_bit_identical_whatever_the_worker_count_also_across_a_resume(tiny_run, tmp_path, capsys):
    """The same seed gives the same files with 1 or 3 workers, and a run interrupted
    with 3 workers and resumed with 1 ends as an uninterrupted one."""
    archive = tiny_run[0]
    options = [
        "--data",
        archive,
        "--model",
        "resnet14-s2u1",
        "--train-size",
        20,
        "--test-size",
        10,
        "--epochs",
        2,
        "--batch-size",
        10,
        "--quiet",
    ]
    for threads in (1, 3):
        assert run(capsys, "train", *options, "--threads", threads, "--out", tmp_path / f"t{threads}")[0] == 0
    assert run(capsys, "train", *options, "--threads", 3, "--stop-after", 1, "--out", tmp_path / "resumed")[0] == 0
    assert run(capsys, "train", *options, "--threads", 1, "--resume", "--out", tmp_path / "resumed")[0] == 0
    for other in ("t3", "resumed"):
        assert_npz_identical(tmp_path / "t1" / "weights.npz", tmp_path / other / "weights.npz")
        assert without_timing(read_log(tmp_path / "t1")) == without_timing(read_log(tmp_path / other))


def test_a_mobilenet_run_with_dropout_resumes_bit_identically(tiny_run, tmp_path, capsys):
    """MobileNetV2's dropout draws its masks from the run's RNG (saved in every checkpoint)."""
    options = [
        "--data",
        tiny_run[0],
        "--model",
        "imagenet-mobilenetv2-shared++",
        "--train-size",
        20,
        "--test-size",
        10,
        "--epochs",
        2,
        "--batch-size",
        10,
        "--quiet",
    ]
    assert run(capsys, "train", *options, "--out", tmp_path / "straight")[0] == 0
    assert run(capsys, "train", *options, "--stop-after", 1, "--out", tmp_path / "resumed")[0] == 0
    assert run(capsys, "train", *options, "--resume", "--out", tmp_path / "resumed")[0] == 0
    assert_npz_identical(tmp_path / "straight" / "checkpoint.npz", tmp_path / "resumed" / "checkpoint.npz")


# ---------------------------------------------------- streams, signals, limits (real processes)


def complete_run(out, epochs):
    """The run in ``out`` finished ``epochs`` epochs, and its files are what minibasis writes."""
    assert [r["epoch"] for r in read_log(out)] == list(range(1, epochs + 1))
    assert json.loads((out / "config.json").read_text())["format"] == "minibasis run 2"
    assert runs.load_checkpoint(out / "checkpoint.npz", create_model("resnet8")).epoch == epochs


@pytest.mark.parametrize("value", ["yes", "true", "2", "01", "\uff11"])
def test_a_bad_minibasis_reference_is_one_line(value):
    proc = subprocess.run(
        command("info", "resnet20"),
        cwd=ROOT,
        env=process_env(MINIBASIS_REFERENCE=value),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert (
        proc.stderr
        == f"minibasis info: error: MINIBASIS_REFERENCE: expected '1' (reference mode), '0' or unset, got {value!r}\n"
    )


def test_a_broken_stdout_pipe_does_not_stop_training(tiny_run, tmp_path):
    """``train … | head -1``: a closed stdout pipe does not stop the run; all 3 epochs complete,
    exit 0, with no traceback."""
    archive, *_ = tiny_run
    out = tmp_path / "run"
    proc = subprocess.Popen(
        command("train", "--data", archive, *TINY_TRAIN, "--epochs", 3, "--out", out),
        cwd=ROOT,
        env=process_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().startswith("epoch   1/3")
    proc.stdout.close()  # what head does after its line
    err = proc.stderr.read()
    assert proc.wait(timeout=300) == 0 and "Traceback" not in err and "Exception ignored" not in err, err
    complete_run(out, 3)


@pytest.mark.parametrize("how", ["closed", "full"])
def test_a_closed_or_full_stderr_does_not_stop_training(tiny_run, tmp_path, how):
    """``2>&-`` and ``2>/dev/full``: the run completes with exit 0, and no
    progress line lands in a run file (a closed fd 2 would be the number of the next file opened)."""
    archive, *_ = tiny_run
    out = tmp_path / "run"
    argv = command("train", "--data", archive, *TINY_TRAIN, "--epochs", 2, "--progress-every", 0, "--out", out)
    if how == "closed":
        proc = subprocess.run(
            argv, cwd=ROOT, env=process_env(), stdout=subprocess.PIPE, preexec_fn=lambda: os.close(2), timeout=300
        )
    else:
        with open("/dev/full", "w") as full:
            proc = subprocess.run(argv, cwd=ROOT, env=process_env(), stdout=subprocess.PIPE, stderr=full, timeout=300)
    assert proc.returncode == 0
    complete_run(out, 2)
    assert all(b"images, " not in p.read_bytes() for p in out.iterdir())


def test_a_file_size_limit_names_the_file(tiny_run, tmp_path):
    """``ulimit -f``: ``File too large`` is one line naming the file that was not written, and no
    temp file is left."""
    import resource

    archive, *_ = tiny_run
    out = tmp_path / "run"

    def limit():  # 100 kB: the checkpoint is larger
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    proc = subprocess.run(
        command("train", "--data", archive, *TINY_TRAIN, "--epochs", 1, "--quiet", "--out", out),
        cwd=ROOT,
        env=process_env(),
        capture_output=True,
        text=True,
        preexec_fn=limit,
        timeout=300,
    )
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(
        f"minibasis train: error: {out / 'checkpoint.npz'}: File too large; nothing was written there"
    ), proc.stderr
    assert not runs.stale_temp_files(out)


def test_out_of_memory_is_one_line_with_the_model_and_batch_size(tiny_run, tmp_path, capsys, monkeypatch):
    archive, *_ = tiny_run

    def no_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 3.00 GiB for an array with shape (805306368,) and data type float32")

    monkeypatch.setattr(T, "_sgd_step", no_memory)
    code, out, err = run(
        capsys, "train", "--data", archive, *TINY_TRAIN, "--epochs", 1, "--quiet", "--out", tmp_path / "run"
    )
    assert code == 1 and err.count("\n") == 1, err
    assert err == (
        "minibasis train: error: out of memory (Unable to allocate 3.00 GiB for an array with shape (805306368,) "
        "and data type float32) while training resnet8 with batch size 10; "
        "try a smaller --batch-size, or fewer --threads\n"
    )


def test_ctrl_c_before_any_run_file_says_to_run_the_command_again(tiny_run, tmp_path, capsys, monkeypatch):
    archive, *_ = tiny_run

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(T, "load_run_data", interrupted)
    code, out, err = run(capsys, "train", "--data", archive, *TINY_TRAIN, "--out", tmp_path / "run")
    assert code == 130
    assert (
        err == "minibasis train: interrupted. No run file was written: run the same command again to start the run.\n"
    )


def test_resume_with_nothing_else_continues_or_says_the_run_is_complete(tiny_run, tmp_path, capsys):
    """The run remembers its data, so ``--resume --out`` alone continues it; each resume says
    where it starts, or that the run is complete."""
    archive, *_ = tiny_run
    out = tmp_path / "run"
    code, stdout, err = run(
        capsys, "train", "--data", archive, *TINY_TRAIN, "--epochs", 2, "--stop-after", 1, "--quiet", "--out", out
    )
    assert code == 0 and stdout.endswith(
        f"1 of 2 epochs done; continue it with: minibasis train --resume --out {out}\n"
    ), stdout
    code, stdout, err = run(capsys, "train", "--resume", "--out", out, "--quiet")
    assert code == 0 and stdout.startswith(f"{out}: resuming at epoch 2 of 2\n"), (stdout, err)
    code, stdout, err = run(capsys, "train", "--resume", "--out", out, "--quiet")
    assert code == 0 and stdout.startswith(f"{out}: the run is already complete (2 of 2 epochs)"), (stdout, err)
    complete_run(out, 2)


def test_resume_on_data_moved_elsewhere_and_on_other_data_when_allowed(tiny_run, tmp_path, capsys):
    archive, *_ = tiny_run
    out = tmp_path / "run"
    assert (
        run(capsys, "train", "--data", archive, *TINY_TRAIN, "--epochs", 3, "--stop-after", 1, "--quiet", "--out", out)[
            0
        ]
        == 0
    )
    moved = tmp_path / "moved" / archive.name
    moved.parent.mkdir()
    shutil.copy(archive, moved)
    code, stdout, err = run(capsys, "train", "--resume", "--data", moved, "--stop-after", 1, "--quiet", "--out", out)
    assert code == 0, err  # the same bytes elsewhere: accepted, the new path recorded
    assert json.loads((out / "config.json").read_text())["data"]["path"] == str(moved)
    other = write_cifar10_archive(tmp_path / "other", train_per_class=4, test_per_class=2, seed=9)
    code, stdout, err = run(capsys, "train", "--resume", "--data", other, "--quiet", "--out", out)
    assert code == 1 and err.startswith("minibasis train: error: data: expected the data of the run"), err
    code, stdout, err = run(capsys, "train", "--resume", "--data", other, "--allow-other-data", "--quiet", "--out", out)
    assert code == 0 and f"note: training on {other}" in stdout, (stdout, err)
    assert json.loads((out / "config.json").read_text())["data"]["path"] == str(other)


def test_a_real_out_of_memory_under_ulimit_v_is_one_line(shared_archive, tmp_path):
    """``ulimit -v``: a real out-of-memory is one line naming the model and the batch size, not a
    traceback."""
    import resource

    limit = lambda: resource.setrlimit(resource.RLIMIT_AS, (2_500_000_000, 2_500_000_000))  # noqa: E731
    argv = command(
        "train",
        "--data",
        shared_archive,
        "--model",
        "resnet20",
        "--train-size",
        2000,
        "--test-size",
        10,
        "--batch-size",
        2000,
        "--epochs",
        1,
        "--quiet",
        "--threads",
        1,
        "--out",
        tmp_path / "run",
    )
    proc = subprocess.run(
        argv,
        cwd=ROOT,
        env=process_env(OPENBLAS_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        preexec_fn=limit,
        timeout=300,
    )
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("minibasis train: error: out of memory (Unable to allocate "), proc.stderr
    assert proc.stderr.endswith(
        "while training resnet20 with batch size 2000; try a smaller --batch-size, or fewer --threads\n"
    )


def test_eval_with_model_ignores_a_config_json_that_is_not_a_runs(tiny_run, tmp_path, capsys):
    archive, weights, *_ = tiny_run
    folder = tmp_path / "mine"
    folder.mkdir()
    shutil.copy(weights, folder / "weights.npz")
    (folder / "config.json").write_text('{"name": "my-app"}')
    code, out, err = run(capsys, "eval", folder / "weights.npz", "--data", archive, "--model", "resnet8", "--quiet")
    assert code == 0 and json.loads(out)["model"] == "resnet8", err
    code, out, err = run(capsys, "eval", folder / "weights.npz", "--data", archive, "--quiet")
    assert code == 1 and err.startswith(
        f"minibasis eval: error: {folder / 'config.json'}: expected only the fields of a run's"
    ), err
