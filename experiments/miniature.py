"""The paper's two claims in miniature, over seeds: does sharing cost accuracy, and does the
orthogonality regulariser help? (Kim & Kang, arXiv 2006.05066; here at a size a laptop trains.)

Every model of a grid (``SPEC:λ`` entries) is trained with :func:`minibasis.train.train` for
each of K seeds 0 … K−1, the same seeds for every model: a seed fixes the initialisation, the
stratified training and test subsets, the batch order and the augmentation, so two models'
runs of one seed differ only by the model and λ. One CSV row per (model, seed): the final test
accuracy and loss, R, the seconds and the minibasis version. Then the paired analysis
(:mod:`experiments.paired`) of every pair of models, printed as a table and drawn as a figure
(:mod:`experiments.report`)::

    python -m experiments.miniature            # the default grid below: ~90 minutes on 2 idle cores (estimated)
    python -m experiments.miniature --seeds 2 --epochs 1 --train-size 200 --test-size 200 \\
        --grid resnet14-s2u1:10 resnet8:0 --out /tmp/tiny.csv --runs /tmp/tiny-runs

The training settings are tutorial 06's (batch 128, SGD lr 0.1 with momentum 0.9, weight decay
5e-4, cosine schedule, augmentation). An interrupted grid resumes when started again with the
same arguments: rows already in the CSV are skipped, a run cut short continues from its last
epoch's checkpoint (bit-identical to an uninterrupted one), and the CSV is rewritten atomically
after every run. A finished grid started again only prints its analysis.
"""

import argparse
import csv
import io
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import minibasis
from minibasis import runs
from minibasis import train as training
from minibasis.checks import fail, real
from minibasis.files import FolderBusy, atomic_write, folder_lock
from minibasis.models import create_model
from minibasis.parallel import available_cores

from . import report

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "cifar-10-subset-python.tar.gz"
#: The paper's model, its ablation without the regulariser, the plain ResNet (pairs read first − second).
GRID = ("resnet20-s16u1:10", "resnet20-s16u1:0", "resnet20:0")
#: Tutorial 06's training; the grid varies the model, λ and the seed.
SETTINGS = training.TrainConfig(
    train_size=5000,
    test_size=2000,
    epochs=6,
    batch_size=128,
    lr=0.1,
    momentum=0.9,
    weight_decay=5e-4,
    schedule="cosine",
)
#: The CSV: what identifies a row, the settings that must match for a resume, the measurements.
KEY = ("model", "lam", "seed")
SETTING_COLUMNS = ("train_size", "test_size", "epochs", "batch_size", "lr", "schedule")
COLUMNS = KEY + SETTING_COLUMNS + ("test_acc", "test_loss", "R", "seconds", "minibasis_version")
TYPES = {
    "model": str,
    "schedule": str,
    "minibasis_version": str,
    "seed": int,
    "train_size": int,
    "test_size": int,
    "epochs": int,
    "batch_size": int,
}  # the others are floats


@dataclass(frozen=True)
class Entry:
    """One model of the grid: a spec and its λ."""

    spec: str
    lam: float

    @classmethod
    def parse(cls, text):
        """``'resnet20-s16u1:10'`` -> Entry (the spec checked, λ a real ≥ 0)."""
        spec, colon, lam = str(text).rpartition(":")
        if not colon:
            fail("--grid", "entries SPEC:λ such as resnet20-s16u1:10", repr(text))
        try:
            spec = create_model(spec).spec.name  # as the library writes it: 'ResNet20' -> 'resnet20'
            lam = real("λ", float(lam), 0)
        except ValueError as error:
            fail("--grid", f"entries SPEC:λ with a valid spec and a λ ≥ 0 ({error})", repr(text))
        return cls(spec, lam)

    @property
    def name(self):
        """As the CSV's model and lam say it, and as the figure and the table label it."""
        plain = not create_model(self.spec).regulariser and self.lam == 0
        return self.spec if plain else f"{self.spec}, λ = {self.lam:g}"

    def config(self, settings, seed):
        return replace(settings, model=self.spec, lam=self.lam, seed=seed)


# ------------------------------------------------------------------------------------ the CSV


def read_rows(path):
    """The rows of the CSV at ``path``, each a dict of typed values; [] when there is no file."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        reader = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8")))
        header = tuple(reader.fieldnames or ())
        raw_rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        fail(str(path), "a readable UTF-8 CSV", f"{type(error).__name__}: {error}")
    if header != COLUMNS:
        fail(str(path), f"a CSV with the columns {','.join(COLUMNS)}", f"the columns {','.join(header) or 'none'}")
    rows, seen = [], set()
    for line, raw in enumerate(raw_rows, start=2):
        if None in raw or None in raw.values():  # csv puts extra fields under None, fills missing ones with None
            count = sum(raw[name] is not None for name in COLUMNS) + len(raw.get(None, []))
            fail(f"{path}, line {line}", f"{len(COLUMNS)} fields", count)
        try:
            row = {name: TYPES.get(name, float)(raw[name]) for name in COLUMNS}
        except ValueError as error:
            fail(f"{path}, line {line}", "a number in every numeric column", str(error))
        if tuple(row[k] for k in KEY) in seen:
            fail(
                f"{path}, line {line}",
                "one row per (model, lam, seed)",
                f"a second row of {row['model']}, λ = {row['lam']:g}, seed {row['seed']}",
            )
        seen.add(tuple(row[k] for k in KEY))
        rows.append(row)
    return rows


def write_rows(path, rows):
    """The whole CSV, atomically (a temp file, then a rename): a kill leaves the old one or the new one."""
    text = io.StringIO()
    writer = csv.DictWriter(text, COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)  # floats as repr: they read back exactly
    atomic_write(path, lambda f: f.write(text.getvalue().encode("utf-8")))


def check_settings(rows, entries, settings, path):
    """Rows of the grid's models must have been trained with ``settings``: a resume never mixes sizes."""
    models = {(e.spec, e.lam) for e in entries}
    for row in rows:
        if (row["model"], row["lam"]) not in models:
            continue
        differences = [
            f"{c} {row[c]!r} (this grid: {getattr(settings, c)!r})"
            for c in SETTING_COLUMNS
            if row[c] != getattr(settings, c)
        ]
        if differences:
            fail(
                str(path),
                "rows trained with this grid's settings, to resume the grid",
                f"{row['model']}, λ = {row['lam']:g}, seed {row['seed']} with {'; '.join(differences)}; "
                "give another --out (and --runs) for these settings",
            )


# ------------------------------------------------------------------------------------ the grid


def run_folder(runs_dir, entry, seed):
    return Path(runs_dir) / f"{entry.spec}_lam{entry.lam:g}" / f"seed{seed}"


def train_one(entry, seed, settings, runs_dir, data, quiet, print_fn):
    """Train (or resume, or just read back) the run of ``entry`` and ``seed``: its CSV row."""
    config, folder = entry.config(settings, seed), run_folder(runs_dir, entry, seed)
    saved = training.saved_config(folder) if folder.is_dir() else None
    if saved is not None and saved != config:  # a resume would extend or refuse it, not redo it
        fail(
            str(folder),
            f"no run, or a run of {entry.name}, seed {seed} with this grid's settings",
            f"a run of {asdict(saved)}; give another --runs for these settings",
        )
    resume = folder.is_dir() and bool(runs.run_files(folder))
    records = training.train(config, folder, data_path=data, resume=resume, quiet=quiet, print_fn=print_fn)
    last = records[-1]
    return {
        "model": entry.spec,
        "lam": entry.lam,
        "seed": seed,
        **{c: getattr(settings, c) for c in SETTING_COLUMNS},
        "test_acc": last["test_acc"],
        "test_loss": last["test_loss"],
        "R": last["orthogonality"],
        "seconds": sum(r["seconds"] for r in records),  # every epoch's, across interruptions
        "minibasis_version": minibasis.__version__,
    }


def run_grid(entries, seeds, settings, out, runs_dir, *, data=DATA, quiet=False, print_fn=print):
    """Train every (entry, seed) that has no row in the CSV ``out`` yet, seed by seed (an
    interrupted grid has whole pairs), writing the CSV after each run; returns all its rows.
    ``runs_dir`` holds the run folders and is locked while the grid runs."""
    with folder_lock(runs_dir):
        rows = read_rows(out)
        check_settings(rows, entries, settings, out)
        done = {tuple(row[k] for k in KEY) for row in rows}
        todo = [(e, s) for s in seeds for e in entries if (e.spec, e.lam, s) not in done]
        print_fn(
            f"{out}: {len(entries) * len(seeds) - len(todo)} of {len(entries) * len(seeds)} runs done; "
            f"{len(todo)} to train"
        )
        for number, (entry, seed) in enumerate(todo, start=1):
            print_fn(f"--- run {number}/{len(todo)}: {entry.name}, seed {seed} -> {run_folder(runs_dir, entry, seed)}")
            rows.append(train_one(entry, seed, settings, runs_dir, data, quiet, print_fn))
            write_rows(out, rows)
    return rows


# ------------------------------------------------------------------------------------ the command


def parse_args(argv=None):
    d = SETTINGS
    p = argparse.ArgumentParser(prog="python -m experiments.miniature", description=__doc__.split("\n\n")[0])
    p.add_argument("--grid", nargs="+", default=GRID, metavar="SPEC:λ", help=f"models (default: {' '.join(GRID)})")
    p.add_argument("--seeds", type=int, default=5, metavar="K", help="seeds 0 … K−1 for every model (default: 5)")
    p.add_argument("--train-size", type=int, default=d.train_size, help=f"training images (default: {d.train_size})")
    p.add_argument("--test-size", type=int, default=d.test_size, help=f"test images (default: {d.test_size})")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"epochs (default: {d.epochs})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"images per step (default: {d.batch_size})")
    p.add_argument("--data", default=str(DATA), help=f"CIFAR-10 archive or folder (default: {DATA})")
    p.add_argument(
        "--out",
        default=str(ROOT / "experiments" / "results" / "miniature.csv"),
        help="the CSV, one row per (model, seed); resumed when it exists (default: experiments/results/)",
    )
    p.add_argument(
        "--runs", default=str(ROOT / "runs" / "miniature"), help="folder of the run folders (default: runs/miniature)"
    )
    p.add_argument("--figure", help="the figure (default: the CSV's path with .png)")
    p.add_argument(
        "--resolution", type=float, default=1.0, help="the difference to size a larger run for, in points (default: 1)"
    )
    p.add_argument("--threads", type=int, default=available_cores(), help="worker threads (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress lines while a run trains")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        minibasis.set_threads(args.threads)
        entries = [Entry.parse(text) for text in args.grid]
        if len(set(entries)) != len(entries):
            fail("--grid", "each SPEC:λ once", " ".join(args.grid))
        if args.seeds < 1:
            fail("--seeds", "an int ≥ 1", repr(args.seeds))
        settings = replace(
            SETTINGS,
            train_size=args.train_size,
            test_size=args.test_size,
            epochs=args.epochs,
            batch_size=args.batch_size,
        )
        settings.check()
        real("--resolution", args.resolution, 0.001, 100)
        start = time.perf_counter()
        rows = run_grid(
            entries,
            range(args.seeds),
            settings,
            Path(args.out),
            Path(args.runs),
            data=args.data,
            quiet=args.quiet,
            print_fn=lambda line: print(line, flush=True),
        )
        print(f"grid done in {time.perf_counter() - start:.0f} s\n")
        print(report.table(rows, entries, args.resolution / 100))
        report.figure(rows, entries, Path(args.figure or Path(args.out).with_suffix(".png")))
    except (ValueError, OSError, FolderBusy, training.NonFiniteValue) as error:
        print(f"experiments.miniature: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            f"experiments.miniature: interrupted; {args.out} holds the finished runs, and the same command "
            "resumes the grid",
            file=sys.stderr,
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
