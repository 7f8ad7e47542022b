"""What a miniature grid's CSV rows say (:mod:`experiments.miniature`): every seed, the spread,
and for each pair of models the paired interval of :mod:`experiments.paired`, as a table and
as a figure. Nothing is claimed beyond the intervals: a pair whose interval holds 0 reads "no
difference measurable at this size"; each interval is a 95 % one on its own (no correction
for comparing three pairs).
"""

import io
import math
from dataclasses import dataclass
from itertools import combinations
from statistics import fmean, stdev

from minibasis.files import atomic_write

from .paired import PairedDifference, binomial_se, paired_difference, seeds_needed, t_quantile, test_images_needed

NO_DIFFERENCE = "no difference measurable at this size"


def by_seed(rows, entry):
    """{seed: row} of ``entry``'s runs."""
    return {row["seed"]: row for row in rows if (row["model"], row["lam"]) == (entry.spec, entry.lam)}


@dataclass(frozen=True)
class Comparison:
    """``first`` against ``second`` over the seeds both have: the paired interval of the
    accuracy difference, and what a run resolving ``resolution`` would need."""

    first: object  # a miniature.Entry
    second: object
    seeds: tuple  # the seeds both have
    first_accuracies: tuple  # per seed
    second_accuracies: tuple
    difference: PairedDifference
    binomial_se: float  # of one seed's difference: both accuracies' binomial SEs, errors independent
    resolution: float
    seeds_needed: int  # for an interval of ± resolution at the measured sd of the differences
    test_images_needed: int  # for ± resolution from the binomial noise alone (one seed)

    @property
    def reading(self):
        d = self.difference
        if not d.measurable:
            return NO_DIFFERENCE
        return f"first − second in [{100 * d.low:+.1f}, {100 * d.high:+.1f}] points"


def compare(rows, first, second, resolution):
    """The :class:`Comparison` of two entries, or None when they share fewer than 2 seeds."""
    a, b = by_seed(rows, first), by_seed(rows, second)
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return None
    acc_a, acc_b = [a[s]["test_acc"] for s in seeds], [b[s]["test_acc"] for s in seeds]
    n = a[seeds[0]]["test_size"]  # the same for every row of the grid (miniature.check_settings)
    difference = paired_difference(acc_a, acc_b)
    p_a, p_b = fmean(acc_a), fmean(acc_b)
    return Comparison(
        first,
        second,
        tuple(seeds),
        tuple(acc_a),
        tuple(acc_b),
        difference,
        math.hypot(binomial_se(p_a, n), binomial_se(p_b, n)),
        resolution,
        seeds_needed(difference.sd, resolution),
        test_images_needed(p_a, p_b, resolution),
    )


def comparisons(rows, entries, resolution):
    """Every pair of ``entries`` in grid order (differences read first − second); None for a
    pair with fewer than 2 shared seeds."""
    return [compare(rows, a, b, resolution) for a, b in combinations(entries, 2)]


def mean_interval(values):
    """(mean, half-width of its 95 % t-interval; None for one value)."""
    if len(values) < 2:
        return fmean(values), None
    return fmean(values), t_quantile(len(values) - 1) * stdev(values) / math.sqrt(len(values))


# ------------------------------------------------------------------------------------ the table


def table(rows, entries, resolution):
    """The analysis as text: the settings, every seed's accuracy, then every pair."""
    mine = [row for entry in entries for row in by_seed(rows, entry).values()]
    if not mine:
        return "no runs of this grid in the CSV yet"
    first = mine[0]
    seeds = sorted({row["seed"] for row in mine})
    versions = ", ".join(sorted({row["minibasis_version"] for row in mine}))
    lines = [
        (
            f"{first['train_size']:,} training / {first['test_size']:,} test images, {_epochs(first)}, "
            f"batch {first['batch_size']}, {first['schedule']} lr {first['lr']:g}; "
            f"seeds {', '.join(map(str, seeds))}; minibasis {versions}"
        ),
        "",
    ]
    lines += _accuracy_lines(rows, entries, seeds, first["test_size"])
    lines += ["", _pair_lines_intro(resolution)]
    lines += _pair_lines(comparisons(rows, entries, resolution), entries)
    return "\n".join(lines)


def _epochs(row):
    return f"{row['epochs']} epoch{'s' * (row['epochs'] != 1)}"


def _accuracy_lines(rows, entries, seeds, n):
    lines = [
        f"Test accuracy, % (± binomial SE of {n:,} images); mean with its 95 % t-interval over the seeds",
        "| model | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | sd | s per run |",
        "|---|" + "---:|" * (len(seeds) + 3),
    ]
    for entry in entries:
        runs = by_seed(rows, entry)
        cells = [
            f"{100 * runs[s]['test_acc']:.1f} ± {100 * binomial_se(runs[s]['test_acc'], n):.1f}" if s in runs else "—"
            for s in seeds
        ]
        accs = [runs[s]["test_acc"] for s in seeds if s in runs]
        if not accs:
            lines.append(f"| {entry.name} | " + " | ".join(cells) + " | — | — | — |")
            continue
        mean, half = mean_interval(accs)
        spread = (
            (f"{100 * mean:.1f} ± {100 * half:.1f}", f"{100 * stdev(accs):.1f}")
            if half is not None
            else (f"{100 * mean:.1f}", "—")
        )
        seconds = fmean(runs[s]["seconds"] for s in seeds if s in runs)
        lines.append(f"| {entry.name} | " + " | ".join(cells) + f" | {spread[0]} | {spread[1]} | {seconds:.0f} |")
    return lines


def _pair_lines_intro(resolution):
    return (
        f"Paired differences of test accuracy, points (first − second, seed by seed); 95 % t-interval over the "
        f"seeds; to resolve {100 * resolution:g} point(s): the seeds for an interval of ± {100 * resolution:g} at "
        f"the measured sd, and the test images for ± {100 * resolution:g} from binomial noise alone"
    )


def _pair_lines(found, entries):
    lines = [
        (
            "| first − second | seeds | mean | 95 % interval | wins/losses/ties | sd | binomial SE | reading "
            "| seeds needed | test images needed |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for (a, b), c in zip(combinations(entries, 2), found):
        if c is None:
            lines.append(f"| {a.name} − {b.name} | < 2 |" + " — |" * 5 + " needs 2 seeds of both | — | — |")
            continue
        d = c.difference
        lines.append(
            f"| {a.name} − {b.name} | {d.seeds} | {100 * d.mean:+.1f} | [{100 * d.low:+.1f}, "
            f"{100 * d.high:+.1f}] | {d.wins}/{d.losses}/{d.ties} | {100 * d.sd:.1f} "
            f"| {100 * c.binomial_se:.1f} | {c.reading} | {c.seeds_needed:,} | {c.test_images_needed:,} |"
        )
    return lines


# ------------------------------------------------------------------------------------ the figure


def figure(rows, entries, path, print_fn=print):
    """Left: every seed's accuracy (± binomial SE) per model, the mean and its 95 % t-interval.
    Right: every seed's difference per pair, the mean and its paired 95 % t-interval. Written
    atomically to ``path`` (PNG); returns ``path``, or None (and says so) without matplotlib or
    without 2 seeds of a pair."""
    try:  # the Figure class alone: no pyplot, no global backend switched
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        print_fn(f"matplotlib is not installed: no figure drawn ({path}); pip install -e '.[plot]' to draw it")
        return None
    found = comparisons(rows, entries, resolution=0.01)
    if not any(found):
        print_fn(f"no figure ({path}): no pair of models has 2 seeds yet")
        return None
    fig = Figure(figsize=(11, 4.2))
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [len(entries), max(1, len(found))]})
    seeds = sorted({row["seed"] for entry in entries for row in by_seed(rows, entry).values()})
    _draw_accuracies(left, rows, entries, seeds)
    _draw_differences(right, found, entries, seeds)
    first = next(iter(by_seed(rows, entries[0]).values()), None) or rows[0]
    fig.suptitle(
        f"{first['train_size']:,} training / {first['test_size']:,} test images, {_epochs(first)}, "
        f"{len(seeds)} seeds (one colour each); black: mean and its 95 % t-interval over the seeds",
        fontsize=9,
    )
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))
    print_fn(f"wrote {path}")
    return path


def _offsets(seeds):
    """Each seed's horizontal offset, so that the points of one model do not cover one another."""
    return {s: 0.08 * (i - (len(seeds) - 1) / 2) for i, s in enumerate(seeds)}


def _letter(i):
    return chr(ord("A") + i)


def _draw_accuracies(ax, rows, entries, seeds):
    offset = _offsets(seeds)
    for i, entry in enumerate(entries):
        runs = by_seed(rows, entry)
        for k, s in enumerate(seeds):
            if s in runs:
                p, n = runs[s]["test_acc"], runs[s]["test_size"]
                ax.errorbar(
                    i + offset[s],
                    100 * p,
                    yerr=100 * binomial_se(p, n),
                    fmt="o",
                    color=f"C{k % 10}",
                    ms=4,
                    capsize=2,
                    label=f"seed {s}" if i == 0 else None,
                )
        mean, half = mean_interval([r["test_acc"] for r in runs.values()]) if runs else (None, None)
        if half is not None:
            ax.errorbar(i + 0.35, 100 * mean, yerr=100 * half, fmt="D", color="black", ms=5, capsize=4)
    names = [f"{_letter(i)}: {entry.name.replace(', ', chr(10))}" for i, entry in enumerate(entries)]
    ax.set_xticks(range(len(entries)), names, fontsize=8)
    ax.set(
        title="test accuracy per seed (bars: ± binomial SE)", ylabel="test accuracy, %", xlim=(-0.5, len(entries) - 0.3)
    )
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3, axis="y")


def _draw_differences(ax, found, entries, seeds):
    offset = _offsets(seeds)
    pairs = list(combinations(range(len(entries)), 2))  # as comparisons() orders them
    for x, c in enumerate(found):
        if c is None:
            continue
        colour = {s: f"C{k % 10}" for k, s in enumerate(seeds)}  # as in the left panel
        for s, a, b in zip(c.seeds, c.first_accuracies, c.second_accuracies):
            ax.plot(x + offset[s], 100 * (a - b), "o", color=colour[s], ms=4)
        d = c.difference
        ax.errorbar(
            x + 0.35,
            100 * d.mean,
            yerr=[[100 * (d.mean - d.low)], [100 * (d.high - d.mean)]],
            fmt="D",
            color="black",
            ms=5,
            capsize=4,
        )
    ax.axhline(0, color="gray", lw=0.8)
    ax.set_xticks(range(len(pairs)), [f"{_letter(i)} − {_letter(j)}" for i, j in pairs])
    ax.set(
        title="paired difference per seed", ylabel="difference of test accuracy, points", xlim=(-0.5, len(pairs) - 0.3)
    )
    ax.grid(alpha=0.3, axis="y")
