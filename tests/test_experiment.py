"""Tests of the miniature experiment (``experiments/``): the paired analysis against
scipy on synthetic numbers, and the grid at a tiny size (1 epoch, 200 random images, 2 seeds,
resnet8 and resnet14-s2u1 at λ = 10 and 0) checked against its run folders, scipy and the
weights it wrote.
"""

import csv
import json
import math
import re
import shutil
import sys
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

import minibasis
import minibasis.train as T
from minibasis.models import create_model
from minibasis.weights import load_weights
from support.cifar_files import write_cifar10_archive

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # experiments/ is not installed: this checkout's, also under plain `pytest`
from experiments import miniature, paired, report  # noqa: E402

# ------------------------------------------------------------------ the analysis, synthetic numbers


@given(st.integers(1, 300), st.floats(0.5, 0.999))
def test_t_quantile_is_scipys(df, level):
    assert paired.t_quantile(df, level) == pytest.approx(stats.t.ppf((1 + level) / 2, df), rel=1e-10)


@given(st.integers(1, 200), st.floats(0, 50))
def test_t_central_probability_is_scipys(df, t):
    assert paired.t_central_probability(t, df) == pytest.approx(2 * stats.t.cdf(t, df) - 1, abs=1e-12)


def test_known_quantiles_and_standard_errors():
    assert paired.t_quantile(1) == pytest.approx(math.tan(0.95 * math.pi / 2), rel=1e-12)  # Cauchy: (2/π) atan t
    assert paired.t_quantile(2) == pytest.approx(math.sqrt(2 * 0.95**2 / (1 - 0.95**2)), rel=1e-12)  # t/√(2+t²)
    assert paired.normal_quantile() == pytest.approx(stats.norm.ppf(0.975), rel=1e-12)
    assert paired.binomial_se(0.5, 100) == pytest.approx(0.05)
    assert paired.binomial_se(0.45, 2000) == pytest.approx(math.sqrt(0.45 * 0.55 / 2000))


def test_paired_difference_of_a_known_sample():
    a, b = [0.50, 0.47, 0.52, 0.49, 0.46], [0.48, 0.47, 0.49, 0.50, 0.43]  # d = .02, 0, .03, −.01, .03
    d = np.array(a) - np.array(b)
    low, high = stats.t.interval(0.95, 4, loc=d.mean(), scale=stats.sem(d))
    result = paired.paired_difference(a, b)
    assert (result.seeds, result.wins, result.losses, result.ties) == (5, 3, 1, 1)
    assert result.mean == pytest.approx(0.014)
    assert result.sd == pytest.approx(np.std(d, ddof=1))
    assert (result.low, result.high) == pytest.approx((low, high), rel=1e-10)
    assert result.low < 0 < result.high and not result.measurable


def test_an_interval_that_excludes_zero_is_measurable():
    result = paired.paired_difference([3, 4, 5], [1, 1, 1])  # d = 2, 3, 4: mean 3, sd 1
    half = stats.t.ppf(0.975, 2) / math.sqrt(3)
    assert (result.low, result.high) == pytest.approx((3 - half, 3 + half))
    assert result.measurable and result.wins == 3


@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=2, max_size=12))
def test_paired_difference_is_scipys_paired_t_interval(pairs):
    a, b = zip(*pairs)
    d = np.array(a) - np.array(b)
    result = paired.paired_difference(a, b)
    assert result.mean == pytest.approx(d.mean(), abs=1e-12)
    if d.std() > 1e-9:  # scipy's interval is NaN for a zero spread
        low, high = stats.ttest_rel(a, b).confidence_interval(0.95)
        assert (result.low, result.high) == pytest.approx((low, high), rel=1e-8, abs=1e-12)
    assert result.wins == np.sum(d > 0) and result.losses == np.sum(d < 0) and result.ties == np.sum(d == 0)


@given(st.floats(0, 0.05), st.floats(0.002, 0.05))
def test_seeds_needed_is_the_fewest_seeds_whose_interval_is_that_narrow(sd, resolution):
    k = np.arange(2, 5000)
    narrow = stats.t.ppf(0.975, k - 1) * sd / np.sqrt(k) <= resolution
    assert paired.seeds_needed(sd, resolution) == k[np.argmax(narrow)]


@given(st.floats(0, 1), st.floats(0, 1), st.floats(0.001, 0.2))
def test_test_images_needed_is_the_fewest_for_that_binomial_interval(p_a, p_b, resolution):
    n = paired.test_images_needed(p_a, p_b, resolution)
    half = lambda n: stats.norm.ppf(0.975) * math.sqrt((p_a * (1 - p_a) + p_b * (1 - p_b)) / n)  # noqa: E731
    assert half(n) <= resolution * (1 + 1e-12)
    assert n == 1 or half(n - 1) > resolution


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: paired.paired_difference([0.1, 0.2], [0.1]), "b: expected 2 values, one per seed of a, got 1 values"),
        (lambda: paired.paired_difference([0.1], [0.2]), "a: expected values of at least 2 seeds"),
        (lambda: paired.paired_difference([0.1, float("nan")], [0.2, 0.3]), "a[1]: expected a finite real number"),
        (lambda: paired.seeds_needed(0.02, 0), "resolution: expected a difference > 0, got 0"),
        (lambda: paired.t_quantile(0), "df: expected an int ≥ 1, got 0"),
        (lambda: paired.binomial_se(1.5, 10), "p: expected a finite real number in [0, 1], got 1.5"),
    ],
)
def test_bad_arguments_are_named(call, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        call()


# ------------------------------------------------------------------ the report, synthetic rows

ENTRIES = [miniature.Entry.parse(text) for text in ("resnet14-s2u1:10", "resnet14-s2u1:0", "resnet8:0")]


def synthetic_rows(accuracies, test_size=1000):
    """CSV rows with the given accuracies: {entry index: [accuracy of seed 0, 1, …]}."""
    return [
        {
            "model": ENTRIES[i].spec,
            "lam": ENTRIES[i].lam,
            "seed": seed,
            "train_size": 500,
            "test_size": test_size,
            "epochs": 3,
            "batch_size": 128,
            "lr": 0.1,
            "schedule": "cosine",
            "test_acc": acc,
            "test_loss": 2.0,
            "R": 0.0,
            "seconds": 10.0,
            "minibasis_version": "0.1.0",
        }
        for i, accs in accuracies.items()
        for seed, acc in enumerate(accs)
    ]


def test_the_table_reads_each_pair_by_its_interval():
    rows = synthetic_rows({0: [0.50, 0.52, 0.51, 0.53], 1: [0.40, 0.41, 0.43, 0.40], 2: [0.45, 0.40, 0.55, 0.47]})
    text = report.table(rows, ENTRIES, resolution=0.01)
    lines = {line.split(" | ")[0]: line for line in text.splitlines()}
    a_b = lines["| resnet14-s2u1, λ = 10 − resnet14-s2u1, λ = 0"]
    d = np.array([0.10, 0.11, 0.08, 0.13])
    low, high = stats.t.interval(0.95, 3, loc=d.mean(), scale=stats.sem(d))
    assert f"[{100 * low:+.1f}, {100 * high:+.1f}]" in a_b and "| 4/0/0 |" in a_b
    assert f"first − second in [{100 * low:+.1f}, {100 * high:+.1f}] points" in a_b
    k = next(k for k in range(2, 100) if stats.t.ppf(0.975, k - 1) * d.std(ddof=1) / math.sqrt(k) <= 0.01)
    assert f"| {k:,} |" in a_b
    a_c = lines["| resnet14-s2u1, λ = 10 − resnet8"]
    assert report.NO_DIFFERENCE in a_c and "| 3/1/0 |" in a_c
    model = lines["| resnet8"]
    cells = [f"{100 * p:.1f} ± {100 * math.sqrt(p * (1 - p) / 1000):.1f}" for p in (0.45, 0.40, 0.55, 0.47)]
    assert model.split(" | ")[1:5] == cells


def test_a_pair_without_two_seeds_is_said_and_not_drawn(tmp_path):
    rows = synthetic_rows({0: [0.5, 0.6], 1: [0.4]})
    assert "needs 2 seeds of both" in report.table(rows, ENTRIES[:2], resolution=0.01)
    said = []
    assert report.figure(rows, ENTRIES[:2], tmp_path / "f.png", print_fn=said.append) is None
    assert not (tmp_path / "f.png").exists() and "no pair of models has 2 seeds" in said[0]


def test_without_matplotlib_the_figure_is_skipped_with_a_message(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import matplotlib.figure raises ImportError
    said = []
    assert (
        report.figure(
            synthetic_rows({0: [0.5, 0.6], 1: [0.4, 0.5]}), ENTRIES[:2], tmp_path / "f.png", print_fn=said.append
        )
        is None
    )
    assert not (tmp_path / "f.png").exists()
    assert said == [
        (f"matplotlib is not installed: no figure drawn ({tmp_path / 'f.png'}); pip install -e '.[plot]' to draw it")
    ]


# ------------------------------------------------------------------ the grid, tiny

TINY = [
    "--seeds",
    "2",
    "--epochs",
    "1",
    "--train-size",
    "200",
    "--test-size",
    "200",
    "--threads",
    "1",
    "--quiet",
    "--grid",
    "resnet14-s2u1:10",
    "resnet14-s2u1:0",
    "resnet8:0",
]


def run_main(argv, capsys):
    """(exit status, stdout, stderr) of ``python -m experiments.miniature ARGV``."""
    status = miniature.main(argv)
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """The tiny grid, run once: {archive, csv, runs, figure, out (what it printed)}."""
    root = tmp_path_factory.mktemp("grid")
    archive = write_cifar10_archive(root / "data", train_per_class=20, test_per_class=20, seed=0)  # 200 / 200 images
    paths = {"archive": archive, "csv": root / "m.csv", "runs": root / "runs", "figure": root / "m.png"}
    argv = TINY + ["--data", str(archive), "--out", str(paths["csv"]), "--runs", str(paths["runs"])]
    printed = StringIO()
    with redirect_stdout(printed):
        assert miniature.main(argv) == 0
    return {**paths, "argv": argv, "out": printed.getvalue()}


def csv_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_the_csv_has_one_row_per_model_and_seed(grid):
    with open(grid["csv"], newline="", encoding="utf-8") as f:
        header = next(csv.reader(f))
    assert header == [
        "model",
        "lam",
        "seed",
        "train_size",
        "test_size",
        "epochs",
        "batch_size",
        "lr",
        "schedule",
        "test_acc",
        "test_loss",
        "R",
        "seconds",
        "minibasis_version",
    ]
    rows = csv_rows(grid["csv"])
    assert [(r["model"], float(r["lam"]), int(r["seed"])) for r in rows] == [
        ("resnet14-s2u1", 10.0, 0),
        ("resnet14-s2u1", 0.0, 0),
        ("resnet8", 0.0, 0),
        ("resnet14-s2u1", 10.0, 1),
        ("resnet14-s2u1", 0.0, 1),
        ("resnet8", 0.0, 1),
    ]  # seed by seed
    for r in rows:
        assert (r["train_size"], r["test_size"], r["epochs"], r["batch_size"]) == ("200", "200", "1", "128")
        assert (float(r["lr"]), r["schedule"], r["minibasis_version"]) == (0.1, "cosine", minibasis.__version__)
        assert float(r["test_acc"]) * 200 == pytest.approx(round(float(r["test_acc"]) * 200))  # k of 200 images
        assert float(r["seconds"]) > 0


def run_folder(grid, row):
    return grid["runs"] / f"{row['model']}_lam{float(row['lam']):g}" / f"seed{row['seed']}"


def test_each_row_is_the_last_epoch_of_its_run_and_its_weights(grid):
    data = T.load_run_data(grid["archive"], "cifar10")
    for row in csv_rows(grid["csv"]):
        folder, seed = run_folder(grid, row), int(row["seed"])
        config = json.loads((folder / "config.json").read_text())
        assert (config["model"], config["lam"], config["seed"]) == (row["model"], float(row["lam"]), seed)
        assert (config["train_size"], config["test_size"], config["schedule"]) == (200, 200, "cosine")
        log = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
        assert float(row["test_acc"]) == log[-1]["test_acc"] and float(row["test_loss"]) == log[-1]["test_loss"]
        assert float(row["R"]) == log[-1]["orthogonality"]
        assert float(row["seconds"]) == pytest.approx(sum(r["seconds"] for r in log), rel=1e-12)
        model = create_model(row["model"])
        params, state = load_weights(folder / "weights.npz", model)
        images, labels = T.evaluation_subset(data, 200, seed=seed)
        logits, _ = model.apply(
            params,
            state,
            (
                (images / 255.0 - np.reshape(data.stats[0], (1, 3, 1, 1))) / np.reshape(data.stats[1], (1, 3, 1, 1))
            ).astype(np.float32),
            train=False,
        )
        assert np.mean(np.argmax(logits, axis=1) == labels) == pytest.approx(float(row["test_acc"]))


def test_every_model_gets_the_same_seeds_and_the_regulariser_acts(grid):
    rows = csv_rows(grid["csv"])
    for seed in ("0", "1"):
        r = {(row["model"], float(row["lam"])): float(row["R"]) for row in rows if row["seed"] == seed}
        assert r[("resnet8", 0.0)] == 0.0  # no bases
        assert 0 < r[("resnet14-s2u1", 10.0)] < r[("resnet14-s2u1", 0.0)]  # λ·R pulls R down within 2 steps


def test_the_printed_analysis_has_every_seed_and_scipys_intervals(grid):
    rows = csv_rows(grid["csv"])
    acc = {(r["model"], float(r["lam"]), int(r["seed"])): float(r["test_acc"]) for r in rows}
    lines = {line.split(" | ")[0]: line for line in grid["out"].splitlines() if line.startswith("| ")}
    for (model, lam, seed), p in acc.items():
        name = model if model == "resnet8" else f"{model}, λ = {lam:g}"
        cells = lines[f"| {name}"].split(" | ")  # "| name", then seed 0, seed 1, …
        assert cells[1 + seed] == f"{100 * p:.1f} ± {100 * math.sqrt(p * (1 - p) / 200):.1f}"
    pairs = [
        (("resnet14-s2u1", 10.0), ("resnet14-s2u1", 0.0)),
        (("resnet14-s2u1", 10.0), ("resnet8", 0.0)),
        (("resnet14-s2u1", 0.0), ("resnet8", 0.0)),
    ]
    for a, b in pairs:
        d = np.array([acc[(*a, s)] - acc[(*b, s)] for s in (0, 1)])
        line = lines[f"| {a[0]}, λ = {a[1]:g} − " + (b[0] if b[0] == "resnet8" else f"{b[0]}, λ = {b[1]:g}")]
        if d[0] != d[1]:
            low, high = stats.t.interval(0.95, 1, loc=d.mean(), scale=stats.sem(d))
            assert f"[{100 * low:+.1f}, {100 * high:+.1f}]" in line
            assert (report.NO_DIFFERENCE in line) == (low <= 0 <= high)
        assert f"| {np.sum(d > 0)}/{np.sum(d < 0)}/{np.sum(d == 0)} |" in line


def test_the_figure_is_a_small_png(grid):
    png = grid["figure"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    assert (int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")) == (1100, 420)  # 11 × 4.2 in, 100 dpi
    assert len(png) < 150_000
    assert f"wrote {grid['figure']}" in grid["out"]


def test_a_finished_grid_trains_nothing_and_keeps_its_csv(grid, capsys):
    before = grid["csv"].read_bytes()
    status, out, _ = run_main(grid["argv"], capsys)
    assert status == 0 and f"{grid['csv']}: 6 of 6 runs done; 0 to train" in out
    assert grid["csv"].read_bytes() == before


def test_an_interrupted_grid_resumes_to_the_same_rows(grid, tmp_path, capsys):
    """A copy of the grid that lost its last two rows, and the run folder of the last one
    (the run of the other is complete): the resumed grid reads one back and trains one, with
    the same results."""
    shutil.copytree(grid["runs"], tmp_path / "runs")
    lines = grid["csv"].read_text(encoding="utf-8").splitlines(keepends=True)
    (tmp_path / "m.csv").write_text("".join(lines[:-2]), encoding="utf-8")
    shutil.rmtree(tmp_path / "runs" / "resnet8_lam0" / "seed1")
    argv = TINY + ["--data", str(grid["archive"]), "--out", str(tmp_path / "m.csv"), "--runs", str(tmp_path / "runs")]
    status, out, _ = run_main(argv, capsys)
    assert status == 0 and "4 of 6 runs done; 2 to train" in out
    original, resumed = csv_rows(grid["csv"]), csv_rows(tmp_path / "m.csv")
    assert resumed[:5] == original[:5]  # the one read back from its folder: seconds included
    assert {**resumed[5], "seconds": None} == {**original[5], "seconds": None}  # retrained: bit-identical results


def test_a_grid_of_other_settings_is_refused_and_nothing_changes(grid, capsys):
    before = grid["csv"].read_bytes()
    argv = [a if a != "1" else "2" for a in grid["argv"]]  # --epochs 2 (and --threads 2)
    status, _, err = run_main(argv, capsys)
    assert status == 1 and err.count("\n") == 1
    assert err.startswith(
        f"experiments.miniature: error: {grid['csv']}: expected rows trained with this grid's "
        "settings, to resume the grid, got resnet14-s2u1, λ = 10, seed 0 with epochs 1 "
        "(this grid: 2)"
    )
    assert grid["csv"].read_bytes() == before


def test_a_run_folder_of_other_settings_is_refused(grid, tmp_path, capsys):
    shutil.copytree(grid["runs"] / "resnet8_lam0", tmp_path / "runs" / "resnet8_lam0")
    argv = TINY[:-4] + [
        "--grid",
        "resnet8:0",
        "--epochs",
        "2",
        "--data",
        str(grid["archive"]),
        "--out",
        str(tmp_path / "m.csv"),
        "--runs",
        str(tmp_path / "runs"),
    ]
    status, _, err = run_main(argv, capsys)
    assert status == 1
    assert f"error: {tmp_path / 'runs' / 'resnet8_lam0' / 'seed0'}: expected no run, or a run of resnet8, seed 0" in err
    assert not (tmp_path / "m.csv").exists()


@pytest.mark.parametrize(
    "text, message",
    [
        ("model,lam\nresnet8,0\n", "expected a CSV with the columns model,lam,seed,"),
        (
            ",".join(miniature.COLUMNS) + "\nresnet8,0,0,200,200,1,128,0.1,cosine,abc,2.3,0,1.0,0.1.0\n",
            "line 2: expected a number in every numeric column",
        ),
        (",".join(miniature.COLUMNS) + "\nresnet8,0,0,200,200,1,128\n", "line 2: expected 14 fields, got 7"),
        (
            ",".join(miniature.COLUMNS) + "\n" + "resnet8,0,0,200,200,1,128,0.1,cosine,0.1,2.3,0,1.0,0.1.0\n" * 2,
            "line 3: expected one row per (model, lam, seed), got a second row of resnet8, λ = 0, seed 0",
        ),
    ],
)
def test_a_damaged_csv_is_named_and_left_alone(tmp_path, capsys, text, message):
    path = tmp_path / "m.csv"
    path.write_text(text, encoding="utf-8")
    status, _, err = run_main(TINY + ["--out", str(path), "--runs", str(tmp_path / "runs")], capsys)
    assert status == 1 and f"error: {path}" in err and message in err, err
    assert path.read_text(encoding="utf-8") == text


@pytest.mark.parametrize(
    "entries, message",
    [
        (["resnet20"], "--grid: expected entries SPEC:λ such as resnet20-s16u1:10, got 'resnet20'"),
        (["resnet21:0"], "--grid: expected entries SPEC:λ with a valid spec and a λ ≥ 0 (spec: expected a depth"),
        (["resnet8:-1"], "--grid: expected entries SPEC:λ with a valid spec and a λ ≥ 0 (λ: expected a finite real"),
        (["resnet8:x"], "--grid: expected entries SPEC:λ with a valid spec and a λ ≥ 0 (could not convert"),
        (["resnet8:0", "resnet8:0.0"], "--grid: expected each SPEC:λ once, got resnet8:0 resnet8:0.0"),
    ],
)
def test_bad_grid_entries_are_named(tmp_path, capsys, entries, message):
    status, _, err = run_main(TINY + ["--grid", *entries, "--out", str(tmp_path / "m.csv")], capsys)
    assert status == 1 and err.startswith("experiments.miniature: error: " + message), err
    assert not (tmp_path / "m.csv").exists()


def test_ctrl_c_says_how_to_resume(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(T, "train", interrupted)
    status, _, err = run_main(TINY + ["--out", str(tmp_path / "m.csv"), "--runs", str(tmp_path / "runs")], capsys)
    assert status == 130 and not (tmp_path / "m.csv").exists()
    assert err == (
        f"experiments.miniature: interrupted; {tmp_path / 'm.csv'} holds the finished runs, and the same "
        "command resumes the grid\n"
    )


def test_a_spec_is_written_as_the_library_writes_it():
    assert miniature.Entry.parse("ResNet14-S2U1:10") == miniature.Entry("resnet14-s2u1", 10.0)
    assert miniature.Entry.parse("resnet8:0").name == "resnet8"
    assert miniature.Entry.parse("resnet8:0.5").name == "resnet8, λ = 0.5"
