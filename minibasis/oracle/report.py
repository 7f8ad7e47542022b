"""The comparison core (torch-free): minibasis' arrays against another side's, one report.

:func:`compare_outputs` checks every array the other side gave against minibasis' under that
array's tolerance and finds the **first** divergence, in this order:

1. the first module output in forward order (eval or train) over its tolerance: where the two
   implementations part; everything before it agrees (a bug that cannot show at its own
   module's output, a missing ReLU say, shows at the next module);
2. else the first BN state (running statistics after the train pass) in forward order: a
   momentum or running-variance bug changes no output of that pass;
3. else the logits, the loss or R;
4. else the parameter gradient over tolerance nearest the loss (the last in forward order):
   a backward-only bug, such as one use of a shared array missing from its gradient.

Sharing bugs are named as such: a gradient given for a block's copy of a shared array (the
other side holds it per block), or a shared array's gradient alone over tolerance while every
output agrees (a use missing from its gradient: a ``.detach()`` or a copy in one block).
"""

import math
from dataclasses import dataclass

import numpy as np

from .compare import relative_difference
from .keys import module_renamer, renamer

HEADS = ("logits_eval", "logits_train", "loss_ce", "R", "loss")
SECTIONS = ("eval", "train", *HEADS, "state", "grad")


def section_of(key):
    """A golden key's section: 'eval', 'train', 'state', 'grad' (prefixed), or the key itself."""
    return key.split(":", 1)[0]


@dataclass(frozen=True)
class Check:
    """One compared array: minibasis' key, the other side's key, the difference and its tolerance."""

    key: str
    theirs: str
    difference: float
    tolerance: float
    note: str = ""

    @property
    def passed(self):
        return self.difference <= self.tolerance  # NaN fails

    def line(self):
        mark = "ok  " if self.passed else "FAIL"
        shown = self.key if self.theirs == self.key else f"{self.key} (yours: {self.theirs})"
        note = f" {self.note}" if self.note else ""
        return f"  {mark} {shown}: {self.difference:.1e} (tolerance {self.tolerance:.1e}){note}"


@dataclass(frozen=True)
class OracleReport:
    """What a check found. ``passed``: every compared array within its tolerance and no sharing
    problem; ``first_divergence``: the other side's name of the first module (or parameter)
    that diverges, None when all agree; ``text()``: the account, every comparison with its
    figure and tolerance."""

    title: str
    checks: tuple
    first_divergence: str = None
    summary: tuple = ()
    sharing: tuple = ()
    coverage: tuple = ()
    warnings: tuple = ()
    not_compared: tuple = ()

    @property
    def passed(self):
        return bool(self.checks) and all(c.passed for c in self.checks) and not self.sharing

    @property
    def failures(self):
        return [c for c in self.checks if not c.passed]

    def text(self, every=True):
        """The account: verdict, first divergence, sharing, coverage, warnings, then (``every``)
        each comparison in order."""
        verdict = "PASSED" if self.passed else "FAILED"
        counts = f"{len(self.checks)} arrays compared, {len(self.failures)} over tolerance"
        lines = [self.title, f"verdict: {verdict}: {counts}"]
        lines += list(self.summary) + [f"sharing: {s}" for s in self.sharing]
        lines += list(self.coverage) + [f"warning: {w}" for w in self.warnings] + list(self.not_compared)
        if every:
            lines += [
                "every comparison, in order (relative difference: max |yours − minibasis| / max(1, max |minibasis|)):"
            ]
            lines += [c.line() for c in self.checks]
        return "\n".join(lines)

    def __str__(self):
        return self.text(every=False)


def compare_outputs(reference, tolerances, outputs, *, key_map=None, copies=None, title="minibasis oracle"):
    """:class:`OracleReport` of ``outputs`` (the other side's arrays, under its names: golden
    keys such as ``grad:layer1.0.conv1.weight`` renamed by ``key_map``) against ``reference``
    (minibasis', golden keys in forward order), each within ``tolerances[key]``.

    copies: ``{a block's copy of a shared array: its owner}`` as ``state_dict`` keys (a gradient
    given under a copy is a sharing bug). Keys minibasis has that ``outputs`` lacks are not compared
    (listed); a missing module output is normal (a functional conv records none)."""
    rename_key, rename_module = renamer(key_map), module_renamer(key_map)
    checks, missing = [], []
    for key, ours in reference.items():
        section = section_of(key)
        if section not in SECTIONS:
            continue
        theirs = their_key(key, rename_key, rename_module)
        if theirs is None:
            continue
        if theirs not in outputs:
            missing.append(key)
            continue
        checks.append(_check(key, theirs, ours, outputs[theirs], tolerances[key]))
    first, summary = first_divergence(checks)
    sharing = sharing_problems(checks, outputs, copies or {}, rename_key, missing)
    used = {their_key(key, rename_key, rename_module) for key in reference}
    held = {f"grad:{rename_key(key)}" for key in (copies or {}) if rename_key(key)}
    unknown = [key for key in outputs if key not in used and key not in held]
    not_compared = _not_compared(missing) + _ignored(unknown)
    return OracleReport(title, tuple(checks), first, tuple(summary), tuple(sharing), not_compared=not_compared)


def their_key(key, rename_key, rename_module):
    """The other side's name for golden ``key`` (None: it has no such array)."""
    section, _, name = key.partition(":")
    if not name:
        return key
    if section in ("eval", "train"):
        base, at, use = name.partition("@")
        new = rename_module(base)
        return None if new is None else f"{section}:{new}{at}{use}"
    new = rename_key(name)
    return None if new is None else f"{section}:{new}"


def _check(key, theirs, ours, value, tolerance):
    value, ours = np.asarray(value), np.asarray(ours)
    if value.shape != ours.shape:
        return Check(key, theirs, math.inf, tolerance, f"shape {value.shape}, minibasis' {ours.shape}")
    return Check(key, theirs, relative_difference(value, ours), tolerance)


def _name(check):
    return check.theirs.partition(":")[2] or check.theirs


def first_divergence(checks):
    """``(name or None, summary lines)`` by the order of the module docstring."""
    first, lines = _first_module(checks)
    state = [c for c in checks if section_of(c.key) == "state" and not c.passed]
    if state:
        lines.append(f"first BN state over tolerance, in forward order: {_name(state[0])} {state[0].difference:.1e}")
        first = first or _name(state[0]).rsplit(".", 1)[0]
    heads = [c for c in checks if section_of(c.key) in HEADS and not c.passed]
    if heads:
        lines.append("over tolerance: " + ", ".join(f"{c.key} {c.difference:.1e}" for c in heads))
        first = first or heads[0].key
    grads = [c for c in checks if section_of(c.key) == "grad" and not c.passed][::-1]  # nearest the loss first
    if grads:
        shown = ", ".join(f"{_name(c)} {c.difference:.1e}" for c in grads[:3]) + (" …" if len(grads) > 3 else "")
        lines.append(f"gradients over tolerance, nearest the loss first: {shown} ({len(grads)} in all)")
        first = first or _name(grads[0]).rsplit(".", 1)[0]
    if first is None and checks:
        largest = max(c.difference for c in checks)
        lines.append(f"no divergence: every array within its tolerance (largest difference {largest:.1e})")
    return first, lines


def _first_module(checks):
    """The first module in forward order (eval and train together) over tolerance, and its line."""
    modules = [c for c in checks if section_of(c.key) in ("eval", "train")]
    position = {name: i for i, name in enumerate(dict.fromkeys(c.key.partition(":")[2] for c in modules))}
    bad = [c for c in modules if not c.passed]
    if not bad:
        return None, []
    at = min(position[c.key.partition(":")[2]] for c in bad)
    here = [c for c in bad if position[c.key.partition(":")[2]] == at]
    before = [c.difference for c in modules if position[c.key.partition(":")[2]] < at]
    modes = " and ".join(section_of(c.key) for c in here)
    figure = here[0].note or f"{max(c.difference for c in here):.1e}"
    agree = f"the {at} modules before it agree to ≤ {max(before):.0e}" if before else "it is the first module"
    return _name(here[0]).split("@")[0], [f"first divergence: {_name(here[0])} ({modes}) {figure}; {agree}"]


def sharing_problems(checks, outputs, copies, rename_key, missing=()):
    """Sharing bugs, named: per-block copies the other side holds (``copies``: {a block's copy's
    key: its owner's key}); a use missing from a shared array's gradient (and the uses whose
    output the other side did not record: ``missing`` golden keys, where to look)."""
    problems = []
    held = [rename_key(key) for key in copies if rename_key(key) and f"grad:{rename_key(key)}" in outputs]
    if held:
        problems.append(
            f"gradients given for {len(held)} blocks' copies of shared arrays ({held[0]}"
            f"{' …' if len(held) > 1 else ''}): your side holds a shared array per block, where "
            "minibasis (and the authors) hold one array used by every block of the stage"
        )
    if held or not all(c.passed for c in checks if section_of(c.key) != "grad"):
        return problems
    owners = {f"grad:{owner}" for owner in copies.values()}
    for c in checks:
        if c.key in owners and not c.passed:
            owner = c.key[len("grad:") :]
            unseen = sorted({k.partition(":")[2].split("@")[0] for k in missing if copies.get(_weight(k)) == owner})
            where = f"; uses your side did not record as modules: {', '.join(unseen)}" if unseen else ""
            problems.append(
                f"{_name(c)}: this shared array's gradient differs ({c.difference:.1e}) while every output, "
                "BN state and other gradient agrees: a use of it is missing from (or added twice to) its "
                f"gradient (a .detach() or a copy in one block){where}"
            )
    return problems


def _weight(key):
    """The weight key of a module output's golden key: ``eval:layer1.1.shared_basis_1@2`` → ``….weight``."""
    return key.partition(":")[2].split("@")[0] + ".weight"


def _ignored(unknown):
    """A line for keys of the other side that minibasis has no array for (a typo, another name)."""
    if not unknown:
        return ()
    return (
        f"ignored: {len(unknown)} of your keys are not in the reference "
        f"{unknown[:4]}{' …' if len(unknown) > 4 else ''}",
    )


def _not_compared(missing):
    if not missing:
        return ()
    modules = [k for k in missing if section_of(k) in ("eval", "train")]
    others = [k for k in missing if k not in modules]
    lines = []
    if modules:
        lines.append(f"not compared: {len(modules)} module outputs your side did not record (e.g. {modules[0]})")
    if others:
        shown = ", ".join(others[:4]) + (" …" if len(others) > 4 else "")
        lines.append(f"not compared: {len(others)} arrays your side did not give: {shown}")
    return tuple(lines)
