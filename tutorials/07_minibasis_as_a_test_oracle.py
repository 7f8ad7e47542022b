# %% [markdown]
# # 07 · minibasis as a test oracle
#
# **What this teaches.** How to prove a fast implementation (PyTorch, JAX, a CUDA kernel) of
# the paper's networks right with one call, and, when it is wrong, how the oracle finds the
# *first* layer where it parts from minibasis. minibasis computes every number in float64
# NumPy with gradients from autograd that are themselves checked against finite differences;
# an implementation that agrees with it on the same weights and inputs, module by module,
# outputs, BN statistics *and* gradients, computes the same function.
#
# The implementation under test here is `minibasis.torch_reference`: the authors' classes
# (ssregibility/Net_RL2) rewritten in PyTorch with their attribute names, independently of
# minibasis' NumPy code. At the end we plant a bug in it and let the oracle find it.
#
# PyTorch is optional: without it, the PyTorch parts are skipped and the golden-file part
# (section 4: for implementations outside PyTorch) still runs.
#
# **Time.** Full mode (`resnet20-s16u1` at 32 px, and `imagenet-mobilenetv2-shared` at 224 px
# in float32) about 20 s on a 2-core machine (measured 19 s); `MINIBASIS_FAST=1`
# (`resnet14-s2u1` at 16 px, the MobileNet at 64 px) about 10 s.

# %%
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from minibasis.data import DATASETS, load_cifar, normalize
from minibasis.models import create_model
from minibasis.oracle import (
    check_golden,
    check_torch,
    read_golden,
    relative_difference,
    write_golden,
)
from minibasis.oracle.record import reference_run
from minibasis.weights import from_state_dict, load_weights, to_state_dict
from tutorial_setup import DATA, FAST  # this checkout's minibasis, the mode, the paths

START = time.perf_counter()
try:
    import torch

    torch.set_num_threads(2)
except ImportError:
    torch = None
    print("SKIPPED (PyTorch parts): torch is not installed; `pip install torch` to run them.")

SPEC, SIZE = ("resnet14-s2u1", 16) if FAST else ("resnet20-s16u1", 32)
MOBILE_SIZE = 64 if FAST else 224
print(f"mode: {'FAST' if FAST else 'full'}; {SPEC} at {SIZE} px, imagenet-mobilenetv2-shared at {MOBILE_SIZE} px")

# %% [markdown]
# ## 1. One call
#
# `check_torch(module, spec, regulariser=…)` takes your `nn.Module` (here the authors'
# structure from `torch_reference`; any weights: it loads its own) and returns an
# `OracleReport`. What it does, in order:
#
# * draws random weights in which no array sits at a symmetric default (BN weights ≠ 1,
#   running variances ≠ 1, …: a swap of two BNs would go unnoticed at init) and loads them
#   into your module **strictly** (`load_state_dict(strict=True)`): the authors' `state_dict`
#   keys, or yours through `key_map`;
# * takes the dtype from your module, turns dropout off on both sides, and makes **probe
#   inputs** that reach every branch (section 3);
# * runs eval mode, then one train-mode pass with `loss = CE + λ·R` (R from your
#   `regulariser(module)`, λ the authors' 10 for the shared models) and `loss.backward()`;
# * compares every module's output in forward order in both modes (forward hooks on your side,
#   matched by name), the logits, the loss and R, the BN state after the train pass, and every
#   parameter's gradient, each against its tolerance.

# %%
if torch is not None:
    from minibasis.torch_reference import build_torch_model

    def authors_net(spec, dtype=torch.float64):
        """The authors' structure in PyTorch (any weights: check_torch loads its own)."""
        model = create_model(spec)
        return build_torch_model(model, to_state_dict(model, *model.init(0, dtype=np.float64)), dtype=dtype)

    net = authors_net(SPEC)
    report = check_torch(net, SPEC, regulariser=lambda net: net.orthogonality(), image_size=SIZE)
    print(report)  # the summary; report.text() adds every comparison
    lines = report.text().splitlines()
    print("…", *lines[-4:], sep="\n")
    assert report.passed and report.first_divergence is None

# %% [markdown]
# `report.passed` is the verdict, `report.first_divergence` the name of the first module that
# differs (None here), and `report.text()` the account: every compared array with its
# difference `max |yours − minibasis| / max(1, max |minibasis|)` (absolute for arrays of order
# 1, relative for large ones) and its tolerance. In float64 two correct implementations agree
# to ~1e-13; the tolerance is 1e-9.
#
# ## 2. float32: tolerances from measured rounding
#
# In float32 one figure does not fit every array: the gradient of a shared basis summed over
# many blocks rounds far more than the first conv's output. So when your module is float32,
# minibasis runs in float32 too, on the same (rounded) weights and inputs, and each array's
# tolerance is 10× minibasis' own float32-against-float64 difference for that array (100× for
# gradients, whose sums each library orders differently), at least 1e-6.

# %%
if torch is not None:
    mobile = authors_net("imagenet-mobilenetv2-shared", torch.float32)
    report32 = check_torch(mobile, "imagenet-mobilenetv2-shared", image_size=MOBILE_SIZE)
    print(report32)
    worst = max(report32.checks, key=lambda c: c.difference / c.tolerance)
    print(f"closest to its tolerance: {worst.line().strip()}")
    assert report32.passed

# %% [markdown]
# ## 3. Probe inputs reach every branch
#
# With standard-normal images a ReLU6 rarely clips, so an implementation with ReLU where the
# authors have ReLU6 computes the same numbers and passes. The probe batch scales its images
# from 1× to 30× (eval-mode BN passes the scale on) and adds sparse spikes (train-mode BN
# standardises by batch statistics; an outlier among n values lands near √n standard
# deviations out). The report's coverage lines count the nonlinearities the inputs reached,
# and a warning names each one they did not: MobileNetV2's head ReLU6 in train mode sees too
# few values per channel at the end of the network to clip; eval mode reaches it.

# %%
if torch is not None:
    print(*report32.coverage, *report32.warnings, sep="\n")

# %% [markdown]
# ## 4. Outside PyTorch: a golden file
#
# `minibasis golden SPEC --out FILE.npz` (or `write_golden`) writes everything the check
# compares: inputs and labels, every weight and BN buffer under the `state_dict` names, every
# module's output in forward order in both modes, logits, CE, R (with λ and the regulariser's
# name), the full gradient of CE + λ·R, the BN state after, and a JSON manifest (module order,
# tolerances for float64 and float32). An `.npz` is a zip of `.npy` files: NumPy and JAX read
# it with `np.load`, C++ with any zip reader and the 10-line `.npy` header. Your outputs go
# back under the same keys to `check_golden(path, outputs)`, which gives the same report. Here
# the "other implementation" is minibasis in float32, fed from the file alone.

# %%
scratch = Path(tempfile.mkdtemp(prefix="minibasis-tutorial-07-"))
golden = write_golden(scratch / f"{SPEC}.npz", SPEC, image_size=SIZE)
arrays, manifest = read_golden(golden)
modules = manifest["modules"]
print(
    f"{golden.name}: {len(arrays)} arrays, {golden.stat().st_size / 1e6:.1f} MB; manifest: spec {manifest['spec']}, "
    f"{len(modules)} modules from {modules[0]} to {modules[-1]}, λ = {manifest['lambda']}"
)

model = create_model(manifest["spec"])
weights = {
    key.removeprefix("weight:"): value.astype(np.float32) if value.dtype.kind == "f" else value
    for key, value in arrays.items()
    if key.startswith("weight:")
}
params, state = from_state_dict(model, weights)
theirs, _ = reference_run(model, params, state, arrays["x"].astype(np.float32), arrays["labels"], manifest["lambda"])
golden_report = check_golden(golden, theirs)  # float32 arrays: float32 tolerances
print(golden_report)
assert golden_report.passed

# %% [markdown]
# ## 5. The authors' own numbers
#
# That `torch_reference` is the *authors'* function needs numbers their code produced:
# `official/resnet56-double-s16u1.logits.npz` holds the logits of their released
# ResNet56-S16U1* checkpoint on test images of the shared subset, computed by their PyTorch
# model in float32. minibasis reproduces them to float32 precision.

# %%
official = DATA / "official"
if not (official / "resnet56-double-s16u1.npz").exists():
    print(f"SKIPPED (official checkpoint): not found under {official}")
else:
    n_images = 10 if FAST else 100
    data = load_cifar(DATA / "cifar-10-subset-python.tar.gz")
    images = normalize(data.test_images[:n_images], DATASETS["cifar10"].mean, DATASETS["cifar10"].std)
    with np.load(official / "resnet56-double-s16u1.logits.npz") as f:
        stored = f["logits"][:n_images]
    big = create_model("resnet56-s16u1")
    ours, _ = big.apply(*load_weights(official / "resnet56-double-s16u1.npz", big), images, train=False)
    gap = relative_difference(ours, stored)
    print(
        f"{n_images} test images through the authors' checkpoint: max |Δlogit| {gap:.1e}, "
        f"top-1 agreement {np.mean(ours.argmax(1) == stored.argmax(1)):.0%}"
    )
    assert gap < 1e-4

# %% [markdown]
# ## 6. A planted bug, found by its first divergence
#
# Set one BN's ε to 1e-3 (PyTorch's default is 1e-5) deep inside the network, as a port
# that hard-codes the wrong constant in one layer would. The logits move a little; the worst
# key of a plain comparison is somewhere else entirely (a gradient in another stage). The
# report names the layer, and says that everything before it agrees.

# %%
if torch is not None:
    buggy = authors_net(SPEC)
    buggy.get_submodule("layer2.1.basis_bn1").eps = 1e-3
    found = check_torch(buggy, SPEC, regulariser=lambda net: net.orthogonality(), image_size=SIZE)
    print(found)
    worst = max(found.checks, key=lambda c: c.difference)
    print(f"(the largest difference, for comparison: {worst.key} {worst.difference:.1e})")
    assert not found.passed and found.first_divergence == "layer2.1.basis_bn1"

# %% [markdown]
# ## Summary
#
# * One call, `check_torch(module, spec, regulariser=…)`: strict load of random weights,
#   probe inputs, every module's output in both modes, logits, BN state, R and every gradient;
#   a report with the verdict, the first divergence and every figure with its tolerance.
# * float64: 1e-9 everywhere (correct implementations agree to ~1e-13). float32: each array's
#   tolerance from minibasis' own measured float32 rounding of it.
# * Outside PyTorch: `minibasis golden SPEC --out FILE.npz`, then `check_golden(FILE, yours)`.
# * Your own primitives (a fused kernel with a hand-written backward): `check_gradients`
#   against central finite differences in float64, tutorial 03.

# %%
shutil.rmtree(scratch)
print(f"tutorial 07 done in {time.perf_counter() - START:.1f} s")
