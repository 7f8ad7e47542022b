"""Everything minibasis computes for one check, under the keys of a golden file.

One eval pass and one train pass (with the gradient of CE + λ·R), each recorded
(:mod:`minibasis.recording`): every module's output in forward order under the authors' module
names, and the input of every nonlinearity. A module is named by its weight array: the
``state_dict`` layout says which key holds which array, and a shared array (one owner, copies
under the blocks) is named by its uses in order: with n uses per block copy, the first n calls
are the first block's, and so on. A module applied twice under one name (SingleShared's
``shared_basis``: both basis layers of a block) has its second output under ``name@2``.

Keys: ``eval:M`` / ``train:M`` (module outputs), ``logits_eval``, ``logits_train``, ``loss_ce``,
``R``, ``loss`` (CE + λ·R), ``state:K`` (BN state after the train pass), ``grad:K`` (every
parameter; a shared array under its owner's key).
"""

from collections import Counter

import numpy as np

from .. import recording
from ..autodiff import gradient_and_aux
from ..layers import cross_entropy
from ..tree import flatten
from ..weights import state_dict_layout


def names_by_array(model, params):
    """``{id(weight array): [module names of its uses]}``: a shared array's block copies (its
    owner is used only through them), every other array its one module."""
    flat, uses = flatten(params), {}
    for key, _, where, source in state_dict_layout(model):
        if where == "params" and key.endswith(".weight"):
            uses.setdefault(id(flat[source]), []).append((key, source))
    return {
        ident: [key[: -len(".weight")] for key, source in keys if len(keys) == 1 or key != source]
        for ident, keys in uses.items()
    }


def number_uses(names):
    """``names`` with a repeated name's k-th occurrence as ``name@k`` (k ≥ 2)."""
    seen, out = Counter(), []
    for name in names:
        seen[name] += 1
        out.append(name if seen[name] == 1 else f"{name}@{seen[name]}")
    return out


def name_events(events, names):
    """Recorded events -> (``[(module name, output)]``, ``[(nonlinearity label, input)]``) in order."""
    calls = Counter(ident for kind, ident, *_ in events if kind == "module" and ident in names)
    seen, modules, activations, last = Counter(), [], [], "the input"
    for kind, ident, value, _ in events:
        if kind != "module":
            activations.append((f"{kind} after {last}", value))
            continue
        if ident not in names:
            continue
        uses, k = names[ident], seen[ident]
        seen[ident] += 1
        per_name = calls[ident] // len(uses) if calls[ident] % len(uses) == 0 else calls[ident]
        last = uses[min(k // per_name, len(uses) - 1)]
        modules.append((last, value))
    module_names = number_uses([name for name, _ in modules])
    labels = number_uses([label for label, _ in activations])
    return list(zip(module_names, [v for _, v in modules])), list(zip(labels, [v for _, v in activations]))


def module_outputs(model, params, state, x, /, *, train):
    """``[(module name, output)]``: every module's output in forward order, under the authors'
    names (a block's use of a shared conv under the block's name for it), for one
    ``model.apply``. What the oracle compares; in a debugger, where a number first goes wrong."""
    with recording.recording() as events:
        model.apply(params, state, x, train=train)
    return name_events(events, names_by_array(model, params))[0]


def reference_run(model, params, state, x, labels, lam):
    """``(arrays, activations)``: the golden keys above -> arrays, and per mode the nonlinearity
    inputs ``{'eval': [(label, input)], 'train': …}``. ``lam``: the weight of R (0: CE alone;
    R is computed whenever the model has a regulariser)."""
    names = names_by_array(model, params)
    with recording.recording() as events:
        logits_eval, _ = model.apply(params, state, x, train=False)
    eval_modules, eval_acts = name_events(events, names)

    def loss_fn(p):
        logits, new_state = model.apply(p, state, x, train=True)
        ce = cross_entropy(logits, labels)
        r = model.orthogonality(p) if model.regulariser else None
        return (ce + lam * r if lam else ce), (logits, new_state, ce, r)

    with recording.recording() as events:
        grads, (logits_train, new_state, ce, r) = gradient_and_aux(loss_fn)(params)
    train_modules, train_acts = name_events(events, names)
    arrays = {f"eval:{name}": value for name, value in eval_modules}
    arrays.update({f"train:{name}": value for name, value in train_modules})
    arrays.update(logits_eval=np.asarray(logits_eval), logits_train=np.asarray(logits_train), loss_ce=np.asarray(ce))
    if r is not None:
        arrays["R"] = np.asarray(r)
    arrays["loss"] = np.asarray(ce + lam * r if lam else ce)
    arrays.update({f"state:{key}": np.asarray(value) for key, value in flatten(new_state).items()})
    arrays.update({f"grad:{key}": np.asarray(value) for key, value in flatten(grads).items()})
    return arrays, {"eval": eval_acts, "train": train_acts}
