# %% [markdown]
# # 07 · minibasis as a test oracle
#
# **What this teaches.** How to use a slow, readable reference implementation to prove a fast
# one correct. minibasis computes every number of the paper's networks in float64 NumPy, with
# gradients from autograd that are themselves checked against finite differences. So when a
# fast implementation (PyTorch, JAX, a CUDA kernel) agrees with minibasis to rounding error in
# float64 (~1e-15 for the networks below) on the same weights and inputs, outputs *and*
# gradients, the two are the same function.
#
# We do it for the real thing: a small, faithful PyTorch re-implementation of the authors'
# DoubleShared ResNet (ssregibility/Net_RL2, `models/cifar10/resnet.py`: `ResNet_Basis`,
# `BasicBlock_Basis`, `BasicBlock`, same attribute names, hence the same `state_dict` keys),
# loaded strictly from a minibasis weight file; then logits in eval and train mode, the BN
# running statistics, and every parameter gradient of the cross-entropy, name by name. With
# the shared data present, the same PyTorch code also reproduces the logits the authors' own
# checkpoint produced. The last part is the general recipe, with a skeleton you can copy:
# a fused (folded) basis layer written as an autograd primitive with a hand-written gradient,
# checked with `minibasis.testing.check_gradients`, which also catches a planted bug.
#
# The comparison helpers live in the library, `minibasis.oracle`: `random_weights` (no array
# at a symmetric default), `relative_difference` (one array), `compare` (two trees of arrays,
# key by key, with a report naming the worst key and `check(tol)`), and key maps for a model
# whose parameter names differ from the authors' (`save_state_dict(..., key_map=…)`,
# `compare(..., key_map=…)`; section 6).
#
# PyTorch is optional: without it the PyTorch parts are skipped with a message.
#
# **Time.** Full mode (`resnet20-s16u1`, 8 images, plus 100 images through the official
# ResNet56-S16U1 checkpoint) about 40 s on a 2-core laptop; `MINIBASIS_FAST=1`
# (`resnet14-s2u1`, 4 images of 16×16, 10 official images) about 10 s.

# %%
import shutil
import tempfile
import time
from pathlib import Path

import autograd
import autograd.numpy as anp
import numpy as np
from autograd.extend import defvjp, primitive

from tutorial_setup import DATA, FAST  # this checkout's minibasis, the mode, the paths
from minibasis import conv2d, conv2d_input_grad, conv2d_weight_grad, cross_entropy
from minibasis.basis import reconstruct
from minibasis.data import DATASETS, load_cifar, normalize
from minibasis.models import create_model
from minibasis.oracle import compare, export_state_dict, random_weights, relative_difference, shared_bases_as_parameters
from minibasis.testing import GradientCheckError, check_gradients
from minibasis.tree import flatten
from minibasis.weights import load_weights, save_weights, to_state_dict

START = time.perf_counter()
TOL = 1e-8  # float64 agreement demanded everywhere below (relative to the array's scale)

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    torch = None
    print("SKIPPED (PyTorch parts): torch is not installed; `pip install torch` to run them.")

SPEC = "resnet14-s2u1" if FAST else "resnet20-s16u1"
BATCH, SIZE = (4, 16) if FAST else (8, 32)
print(f"mode: {'FAST' if FAST else 'full'}; {SPEC}, {BATCH} images of {SIZE}×{SIZE}, float64")
# Every difference below is `relative_difference(theirs, ours)` = max |theirs − ours| / max(1, max |ours|):
# absolute for arrays of order 1, relative for large ones, so float64 rounding reads ~1e-15 at any scale.


# %% [markdown]
# ## 1. The authors' model, re-implemented in PyTorch
#
# `minibasis.torch_reference` holds the authors' structure (ssregibility/Net_RL2,
# `models/cifar10/resnet.py`) in a few dozen lines of PyTorch, with their attribute names, so
# their `state_dict` keys. Open it beside their file: the details that matter for equality are
#
# * A shared basis is an `nn.Conv2d` created once per stage on the model
#   (`shared_basis_{g}_1`, `shared_basis_{g}_2`) and *handed to every* basis block of the
#   stage, which stores it as `self.shared_basis_1/2`. PyTorch registers the same module under
#   several names, so its weight appears in `state_dict()` once per owner
#   (`layer1.1.shared_basis_1.weight` …), while `named_parameters()` lists it once, under its
#   first name. minibasis writes exactly these keys (`weights.save_weights`).
# * A basis layer: `torch.cat((unique ∗ x, shared ∗ x))` (unique part first) → `basis_bn` →
#   1×1 `coeff_conv` → `bn`; ReLU after the first basis layer and after the residual sum.
# * The first block of every stage is a plain `BasicBlock`; when it changes the shape, the
#   option-A shortcut `F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4))`.
#
# It is written independently of minibasis' NumPy code (only the layer sizes come from the
# minibasis model), which is what makes the comparison below worth something.

# %%
if torch is not None:
    from minibasis.torch_reference import build_torch_model


# %% [markdown]
# ## 2. One set of weights, exported by minibasis, loaded strictly by PyTorch
#
# A fresh initialisation is a poor test: every BN has weight 1, bias 0, mean 0, variance 1,
# so a bug that swapped two of them would go unnoticed. `random_weights` randomises every
# parameter and every running statistic (variances positive, `num_batches_tracked` an
# integer), in float64; we write the file with `save_weights` and read it back with
# `load_weights` (which checks every key, shape and shared copy).

# %%
model = create_model(SPEC)
params, state = random_weights(model, seed=0)
rng = np.random.default_rng(1)

scratch = Path(tempfile.mkdtemp(prefix="minibasis-tutorial-07-"))
weights_file = scratch / f"{SPEC}.npz"
save_weights(weights_file, model, params, state)
with np.load(weights_file) as f:
    state_dict = {key: f[key] for key in f.files}
params, state = load_weights(weights_file, model)  # round trip: what we compare is what is on disk
shared_copies = [key for key in state_dict if ".shared_basis_" in key]
print(f"{weights_file.name}: {len(state_dict)} arrays, {len(shared_copies)} of them per-block copies of a shared basis")
for key in shared_copies:  # 'layer{g}.{b}.shared_basis_{i}.weight' copies 'shared_basis_{g}_{i}.weight'
    stage, _, local, _ = key.split(".")
    owner = f"shared_basis_{stage[len('layer'):]}_{local[-1]}.weight"
    assert np.array_equal(state_dict[key], state_dict[owner]), "every block's copy of a shared basis is the stage's basis"

x = rng.standard_normal((BATCH, 3, SIZE, SIZE))
labels = rng.integers(0, 10, BATCH)

if torch is not None:
    net = build_torch_model(model, state_dict, dtype=torch.float64)  # load_state_dict(strict=True)
    print(f"PyTorch model loaded strictly: {len(net.state_dict())} state_dict keys, "
          f"{len(list(net.named_parameters()))} distinct parameters")

# %% [markdown]
# ## 3. Logits in eval mode, then in train mode with the BN statistics
#
# Eval mode first: deterministic, no state changes, so a disagreement is in the layers
# themselves. Then train mode: BN normalises with batch statistics and updates its running
# mean and (unbiased) running variance; minibasis returns the new statistics as a tree, PyTorch
# keeps them in buffers. Compare the whole `state_dict` after that pass, key by key: the
# parameters (unchanged) and every buffer, per-block copies of the shared bases included.

# %%
if torch is not None:
    logits_eval, _ = model.apply(params, state, x, train=False)
    net.eval()
    with torch.no_grad():
        torch_eval = net(torch.from_numpy(x)).numpy()
    diff_eval = relative_difference(torch_eval, logits_eval)

    logits_train, new_state = model.apply(params, state, x, train=True)
    net.train()
    torch_train = net(torch.from_numpy(x))
    diff_train = relative_difference(torch_train.detach().numpy(), logits_train)
    after = compare(to_state_dict(model, params, new_state), {key: t.numpy() for key, t in net.state_dict().items()})
    print(f"logits, eval mode:  max difference {diff_eval:.1e}")
    print(f"logits, train mode: max difference {diff_train:.1e}")
    print(f"state_dict after the train-mode pass: {after.report()}")
    assert diff_eval < TOL, "eval-mode logits agree in float64"
    assert diff_train < TOL, "train-mode logits agree in float64"
    after.check(TOL)  # the updated BN running statistics agree (an AssertionError names the worst key)

# %% [markdown]
# ## 4. Every parameter gradient, name by name
#
# The gradient of the mean cross-entropy with respect to every parameter: autograd on the
# minibasis side, `loss.backward()` on PyTorch's. A shared basis is one array in minibasis and
# one `nn.Parameter` in PyTorch; both sum the contributions of all blocks that use it, so the
# names line up one to one (`named_parameters()` lists a shared module once).

# %%
if torch is not None:

    def loss(params):
        logits, _ = model.apply(params, state, x, train=True)
        return cross_entropy(logits, labels)

    grads = flatten(autograd.grad(loss)(params))
    net.zero_grad()
    torch_loss = F.cross_entropy(net(torch.from_numpy(x)), torch.from_numpy(labels))
    torch_loss.backward()
    torch_grads = {name: p.grad.numpy() for name, p in net.named_parameters()}
    gradients = compare(grads, torch_grads)  # a ValueError if the names differ
    print(f"loss: minibasis {float(loss(params)):.12f}, PyTorch {torch_loss.item():.12f}")
    print(f"parameter gradients: {gradients.report()}")
    for name in ("shared_basis_1_1.weight", "layer1.1.basis_conv1.weight", "layer3.1.coeff_conv2.weight", "fc.bias"):
        print(f"  {name:30s} ‖grad‖ = {np.linalg.norm(grads[name]):.6f}   difference {gradients.differences[name]:.1e}")
    assert abs(float(loss(params)) - torch_loss.item()) < TOL, "the losses agree"
    gradients.check(TOL)  # every gradient agrees in float64

# %% [markdown]
# ## 5. The authors' own numbers
#
# Steps 3–4 prove that minibasis and our PyTorch code compute the same function. That our
# PyTorch code is the *authors'* function needs one more check, against numbers their code
# produced: `official/resnet56-double-s16u1.logits.npz` holds the logits of their released
# ResNet56-S16U1* checkpoint on the first 1,000 test images of the shared subset, computed
# with their PyTorch model in float32. Our re-implementation (float64) and minibasis (float32,
# as trained) should reproduce them to float32 precision.

# %%
official = DATA / "official"
if not (official / "resnet56-double-s16u1.npz").exists():
    print(f"SKIPPED (official checkpoint): not found under {official}")
else:
    n_images = 10 if FAST else 100
    data = load_cifar(DATA / "cifar-10-subset-python.tar.gz")
    images = normalize(data.test_images[:n_images], DATASETS["cifar10"].mean, DATASETS["cifar10"].std)
    with np.load(official / "resnet56-double-s16u1.logits.npz") as f:
        reference = f["logits"][:n_images]
    big = create_model("resnet56-s16u1")
    big_params, big_state = load_weights(official / "resnet56-double-s16u1.npz", big)
    ours_minibasis, _ = big.apply(big_params, big_state, images, train=False)
    d_minibasis = relative_difference(ours_minibasis, reference)
    print(f"{n_images} test images through the authors' ResNet56-S16U1* checkpoint; max |Δlogit| against their stored logits:")
    print(f"  minibasis (float32):                     {d_minibasis:.1e}")
    print(f"  top-1 agreement with theirs: {np.mean(ours_minibasis.argmax(1) == reference.argmax(1)):.0%}")
    assert d_minibasis < 1e-4, "minibasis reproduces the authors' logits to float32 precision"
    if torch is None:
        print("SKIPPED (official checkpoint through our PyTorch code): needs torch")
    else:
        with np.load(official / "resnet56-double-s16u1.npz") as f:
            official_state_dict = {key: f[key] for key in f.files}
        official_net = build_torch_model(big, official_state_dict, dtype=torch.float64).eval()
        with torch.no_grad():
            ours_torch = official_net(torch.from_numpy(images.astype(np.float64))).numpy()
        d_torch = relative_difference(ours_torch, reference)
        print(f"  our PyTorch re-implementation (float64): {d_torch:.1e}")
        assert d_torch < 1e-4, "our PyTorch re-implementation reproduces the authors' logits to float32 precision"

# %% [markdown]
# ## 6. The recipe, for any fast implementation
#
# 1. **float64 on both sides.** In float32 a correct and an incorrect implementation can both
#    differ from the reference by 1e-5; in float64 a correct one agrees to 1e-12 or better
#    (~1e-15 for the model above), and a bug stands out by ten orders of magnitude. (A
#    float32-only kernel: compare against minibasis in float64 with a tolerance of ~1e-4
#    relative, and test the float64 path of the same code if it has one.)
# 2. **The same weights, through the file format.** `save_weights` writes the authors'
#    `state_dict` keys; load them *strictly* (missing or extra keys are errors). Randomise
#    everything first (`oracle.random_weights`), BN statistics included, so no parameter sits
#    at a symmetric default. If your model names its arrays otherwise, map the keys (below).
# 3. **Outputs before gradients; eval before train.** Eval-mode logits isolate the layers;
#    train-mode logits add batch statistics; then the updated running statistics
#    (`oracle.relative_difference` for one array, `oracle.compare` for a `state_dict`).
# 4. **Gradients name by name**, every parameter, shared ones included (sharing is where a
#    fast implementation forgets to sum contributions): `oracle.compare(grads, theirs)` refuses
#    missing or extra names, and `.check(tol)` names the worst key.
# 5. **Your own primitives**: every operation with a hand-written backward pass gets
#    `check_gradients` (autograd against central finite differences, in float64), and its
#    forward is compared with the plain composition it replaces.
#
# **When your names differ: key maps.** A common way to write the model in PyTorch keeps each
# shared basis as a top-level `nn.Parameter` (`self.shared_basis_1_1 = nn.Parameter(…)`,
# handed to the blocks in `forward`) instead of the authors' `nn.Conv2d` module. Its
# `state_dict` then says `shared_basis_1_1` where minibasis' file says
# `shared_basis_1_1.weight`, and it has none of the per-block copies
# (`layer1.1.shared_basis_1.weight`, …), so a strict load of a minibasis file fails on both.
# A `key_map` (a dict, or a function from minibasis' key to yours, None to leave a key out)
# fixes both sides of the comparison; `oracle.shared_bases_as_parameters` is exactly this one:
#
# ```python
# save_state_dict("w.npz", model, params, state, key_map=shared_bases_as_parameters)
# net.load_state_dict({k: torch.from_numpy(v) for k, v in np.load("w.npz").items()}, strict=True)
# ...
# theirs = {name: p.grad.numpy() for name, p in net.named_parameters()}   # 'shared_basis_1_1', …
# compare(grads, theirs, key_map=shared_bases_as_parameters).check(1e-8)
# ```

# %%
renamed = export_state_dict(model, params, state, key_map=shared_bases_as_parameters)
authors = to_state_dict(model, params, state)
copies = [key for key in authors if ".shared_basis" in key]
print(f"{SPEC}: {len(authors)} keys in the authors' layout, {len(renamed)} for a model with top-level nn.Parameters "
      f"({len(copies)} per-block copies left out); stage 1's shared bases: "
      f"{[key for key in renamed if key.startswith('shared_basis_1')]}")
assert len(renamed) == len(authors) - len(copies) and "shared_basis_1_1" in renamed and "shared_basis_1_1.weight" not in renamed
assert all(np.array_equal(renamed[key.removesuffix(".weight")], authors[key]) for key in authors if key.startswith("shared_basis"))

# %% [markdown]
# A skeleton of step 5. The fast path folds a basis layer's two convolutions into one: the
# coefficients times the basis is an ordinary 3×3 filter bank W = C·B (`basis.reconstruct`;
# in the network a BN sits between the two, which folds in too when it is in eval mode, see
# `basis.fold_basis_layer`, but not in training mode, so here we fold the bare pair),
# and one conv with W costs H·W·C_out·C·9 MACs instead of H·W·r·(C·9 + C_out): for S16U1
# (r = 17 per 16 channels) 15 % less. As an autograd primitive it needs its own VJP:
# with G = ∂loss/∂W = conv2d_weight_grad(x, g), the chain rule through W = C·B gives
# ∂/∂B = Cᵀ G and ∂/∂C = G Bᵀ.

# %%
@primitive
def folded_basis_conv(x, basis, coefficients):
    """conv2d(x, C·B, padding=1): a basis layer's basis conv and 1×1 coefficients, fused."""
    return conv2d(x, reconstruct(basis, coefficients), padding=1)


def folded_vjps(flip_bug=False):
    """The three VJPs of folded_basis_conv (flip_bug: plant a classic conv-vs-correlation bug)."""
    def filter_grad(x, g, basis, coefficients):  # G = ∂loss/∂W, (O, C·3·3)
        O = coefficients.shape[0]
        return conv2d_weight_grad(x, g, w_shape=(O,) + basis.shape[1:], padding=1).reshape(O, -1)

    def vjp_x(y, x, basis, coefficients):
        return lambda g: conv2d_input_grad(g, reconstruct(basis, coefficients), x_shape=x.shape, padding=1)

    def vjp_basis(y, x, basis, coefficients):
        C = coefficients.reshape(coefficients.shape[0], -1)  # (O, r)

        def vjp(g):
            grad_basis = (C.T @ filter_grad(x, g, basis, coefficients)).reshape(basis.shape)  # Cᵀ G
            return grad_basis[..., ::-1, ::-1] if flip_bug else grad_basis

        return vjp

    def vjp_coefficients(y, x, basis, coefficients):
        B = basis.reshape(basis.shape[0], -1)  # (r, C·3·3)
        return lambda g: (filter_grad(x, g, basis, coefficients) @ B.T).reshape(coefficients.shape)  # G Bᵀ

    return vjp_x, vjp_basis, vjp_coefficients


defvjp(folded_basis_conv, *folded_vjps())

# The reference: minibasis's two convolutions, differentiated by autograd.
rng = np.random.default_rng(2)
xs = rng.standard_normal((2, 8, 6, 6))
basis = rng.standard_normal((5, 8, 3, 3))
coefficients = rng.standard_normal((8, 5, 1, 1))
weight = rng.standard_normal((2, 8, 6, 6))  # a fixed random upstream gradient


def two_convs(x, basis, coefficients):
    return conv2d(conv2d(x, basis, padding=1), coefficients)


forward_diff = relative_difference(folded_basis_conv(xs, basis, coefficients), two_convs(xs, basis, coefficients))


def fused_loss(x, basis, coefficients):
    return anp.sum(weight * folded_basis_conv(x, basis, coefficients))


def reference_loss(x, basis, coefficients):
    return anp.sum(weight * two_convs(x, basis, coefficients))


grad_diff = max(
    relative_difference(autograd.grad(fused_loss, i)(xs, basis, coefficients), autograd.grad(reference_loss, i)(xs, basis, coefficients))
    for i in range(3)
)
worst_fd = check_gradients(fused_loss, xs, basis, coefficients, mode="leafwise")
print(f"folded basis conv: forward {forward_diff:.1e}, gradients vs the two-conv reference {grad_diff:.1e}, "
      f"finite differences: worst relative error {worst_fd:.1e}")
assert forward_diff < TOL and grad_diff < TOL, "the fused primitive equals the composition it replaces"

# %% [markdown]
# And the point of the exercise: plant a bug in the basis gradient (return it spatially
# flipped, the classic mix-up of convolution and cross-correlation) and `check_gradients`
# names the argument and shows both numbers.

# %%
defvjp(folded_basis_conv, *folded_vjps(flip_bug=True))
try:
    check_gradients(fused_loss, xs, basis, coefficients, mode="leafwise")
    caught = None
except GradientCheckError as error:
    caught = error
print(f"with the planted bug: {type(caught).__name__}: {str(caught)[:150]}…")
assert caught is not None and str(caught).startswith("basis"), "check_gradients catches a wrong VJP and names the argument"
defvjp(folded_basis_conv, *folded_vjps())  # restore the correct VJPs

# %% [markdown]
# ## Summary
#
# * Same weights (the authors' `state_dict` keys, strict load), same inputs, float64: the
#   PyTorch re-implementation of `ResNet_Basis` and minibasis agree to ~1e-15 (the fast run
#   prints 7e-16 to 1.2e-15; the checks demand 1e-8) in eval-mode and train-mode logits, the
#   updated BN statistics, the loss and all parameter gradients, shared bases included.
# * Against the authors' stored logits, both agree to float32 precision: the PyTorch code is
#   theirs in all that matters, and minibasis with it.
# * For your own kernels: compare outputs, then gradients, in float64; check every
#   hand-written VJP with `check_gradients`, which is how the planted bug above was caught.

# %%
shutil.rmtree(scratch)  # the exported weight file
print(f"tutorial 07 done in {time.perf_counter() - START:.1f} s")
