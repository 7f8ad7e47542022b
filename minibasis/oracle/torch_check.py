"""``check_torch``: a PyTorch module against minibasis, in one call (torch imported lazily)."""

from dataclasses import replace

import numpy as np

from ..checks import fail
from ..models import create_model
from ..weights import state_dict_layout
from .case import prepare
from .exchange import export_state_dict, random_weights
from .keys import module_renamer, renamer
from .record import number_uses
from .report import compare_outputs


def check_torch(module, spec, *, key_map=None, regulariser=None, batch=2, image_size=None, seed=0, lam=None):
    """Check a PyTorch ``module`` that implements ``spec`` against minibasis; an :class:`OracleReport`.

    Steps: random weights at no symmetric default (:func:`random_weights`), loaded strictly
    under ``key_map``'s names; the dtype is the module's; dropout off on both sides; probe
    inputs (:func:`probe_inputs`); eval logits, train logits and BN state after one train
    pass; every module's output in both modes (forward hooks, matched to minibasis' module
    names through ``key_map``); R when ``regulariser(module)`` is given (λ: ``lam``, default
    the authors' 10 for a model trained with one); the gradient of CE + λ·R for every
    parameter. The module is left in train mode with the random weights loaded.
    """
    import torch

    dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), None)
    if dtype not in (torch.float32, torch.float64):
        fail("module", "parameters in float32 or float64", str(dtype))
    model_dtype = np.float32 if dtype == torch.float32 else np.float64
    model = create_model(spec) if isinstance(spec, str) else spec
    state_dict = export_state_dict(model, *random_weights(model, seed, dtype=model_dtype), key_map=key_map)
    _load_strictly(module, model.spec.name, state_dict)  # before minibasis' runs: a mismatch is reported at once
    case = prepare(
        model, batch=batch, image_size=image_size, seed=seed, dtype=model_dtype, lam=lam if regulariser else 0.0
    )
    outputs, held = _run(module, case, key_map, regulariser)
    reference = {k: v for k, v in case.reference.items() if k != "R" or regulariser is not None}
    title = (
        f"minibasis oracle: {type(module).__name__} against {case.model.spec.name}, {np.dtype(model_dtype).name}, "
        f"{case.x.shape[0]} probe images {case.x.shape[2]}×{case.x.shape[3]}, seed {seed}, λ = {case.lam:g}"
    )
    report = compare_outputs(reference, case.tolerance(), outputs, key_map=key_map, copies=case.copies(), title=title)
    return _with(report, case, held)


def _load_strictly(module, spec, state_dict):
    """``load_state_dict(strict=True)``, a mismatch first reported in one line naming the keys."""
    import torch

    theirs = module.state_dict()
    unknown = [k for k in theirs if k not in state_dict]
    lacking = [k for k in state_dict if k not in theirs]
    if unknown or lacking:
        fail(
            "module",
            f"the state_dict keys of {spec} (after key_map)",
            f"{len(unknown)} keys minibasis does not have {unknown[:3]}, {len(lacking)} it lacks {lacking[:3]}",
        )
    for key, value in state_dict.items():
        if tuple(theirs[key].shape) != value.shape:
            fail(f"module[{key!r}]", f"shape {value.shape} (minibasis')", f"shape {tuple(theirs[key].shape)}")
    module.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state_dict.items()}, strict=True)


def _with(report, case, held):
    sharing = report.sharing + tuple(held)
    return replace(report, coverage=case.coverage, warnings=case.warnings, sharing=sharing)


def _run(module, case, key_map, regulariser):
    """The module's arrays under golden keys (its names), and the sharing problems of its parameters."""
    import torch

    wanted = {
        module_renamer(key_map)(key.partition(":")[2].split("@")[0])
        for key in case.reference
        if key.startswith("eval:")
    }
    x, labels = torch.from_numpy(case.x), torch.from_numpy(case.labels)
    module.eval()
    with torch.no_grad(), _hooks(module, wanted) as recorded:
        outputs = {"logits_eval": module(x).numpy()}
    outputs.update({f"eval:{name}": value for name, value in recorded})
    module.train()
    for m in module.modules():  # dropout off, as minibasis' train pass without an rng
        if isinstance(m, torch.nn.modules.dropout._DropoutNd):
            m.eval()
    module.zero_grad(set_to_none=True)
    with _hooks(module, wanted) as recorded:
        logits = module(x)
    outputs.update({f"train:{name}": value for name, value in recorded})
    outputs.update(_loss_and_gradients(module, logits, labels, case.lam, regulariser))
    statistics = ("running_mean", "running_var", "num_batches_tracked")
    outputs.update(
        {f"state:{k}": v.numpy() for k, v in module.state_dict().items() if k.rsplit(".", 1)[-1] in statistics}
    )
    return outputs, _held_per_block(module, case, key_map)


def _loss_and_gradients(module, logits, labels, lam, regulariser):
    """CE, R (when ``regulariser``), CE + λ·R, train logits and every parameter's gradient."""
    import torch.nn.functional as F

    ce = F.cross_entropy(logits, labels)
    arrays, loss = {}, ce
    if regulariser is not None:
        r = regulariser(module)
        arrays["R"] = r.detach().numpy()
        loss = ce + lam * r if lam else ce
    loss.backward()
    arrays.update(logits_train=logits.detach().numpy(), loss_ce=ce.detach().numpy(), loss=loss.detach().numpy())
    for name, p in module.named_parameters():  # a parameter the loss never reached: zeros, as autograd's
        arrays[f"grad:{name}"] = p.grad.numpy() if p.grad is not None else np.zeros(tuple(p.shape))
    return arrays


def _held_per_block(module, case, key_map):
    """Shared arrays the module holds as several tensors (one per block)."""
    rename, tensors, problems = renamer(key_map), module.state_dict(keep_vars=True), []
    groups = {}
    for key, _, _, source in state_dict_layout(case.model):
        if rename(key) in tensors:
            groups.setdefault(source, []).append(rename(key))
    for source, keys in groups.items():
        separate = [k for k in keys[1:] if tensors[k] is not tensors[keys[0]]]
        if separate:
            shown = ", ".join(separate[:3]) + (" …" if len(separate) > 3 else "")
            problems.append(
                f"{source} is one array in minibasis, used by {len(keys) - 1} blocks; your module holds "
                f"{len(separate)} of them as separate tensors ({shown}): it is held per block"
            )
    return problems


class _hooks:
    """Forward hooks on every module: the outputs of the ``wanted`` names, in call order. A
    module registered under several names (a shared conv) is named, at each call, by the name
    under the module that is running it (the block), as minibasis names each use."""

    def __init__(self, module, wanted):
        self.module, self.wanted, self.records, self.stack, self.handles = module, wanted, [], [], []

    def __enter__(self):
        names = {}
        for name, m in self.module.named_modules(remove_duplicate=False):
            names.setdefault(id(m), []).append(name)
        seen = set()
        for m in self.module.modules():
            if id(m) in seen:
                continue
            seen.add(id(m))
            self.handles.append(m.register_forward_pre_hook(lambda m, args: self.stack.append(m)))
            self.handles.append(m.register_forward_hook(lambda m, args, out, names=names: self._after(m, out, names)))
        return self.records

    def _after(self, m, out, names):
        self.stack.pop()
        own = names[id(m)]
        name = own[0]
        if len(own) > 1 and self.stack:
            parents = names.get(id(self.stack[-1]), [])
            name = next((n for n in own if n.rpartition(".")[0] in parents), name)
        if name in self.wanted and hasattr(out, "detach"):
            self.records.append((name, out.detach().clone().numpy()))

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()
        numbered = number_uses([name for name, _ in self.records])
        self.records[:] = list(zip(numbered, [v for _, v in self.records]))
