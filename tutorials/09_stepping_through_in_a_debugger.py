# %% [markdown]
# # 09 · Stepping through a training step in a debugger
#
# **What this teaches.** How to watch the method happen inside minibasis with pdb: stop inside
# a basis layer, look at the stacked basis `[U; S]` and at the im2col matrix its convolution
# builds, then follow the backward pass into col2im's loop. Two things make that pleasant:
#
# 1. **Reference mode.** `with minibasis.reference_mode():` (or `MINIBASIS_REFERENCE=1` for a
#    whole script or `python -m pdb` session) makes every kernel run its textbook form:
#    `conv_reference.conv2d` (im2col by a loop over the kernel offsets, one GEMM, col2im), not
#    the fast form's flat-shift phases and chunks; batch norm is its `autograd.numpy` equation.
#    Same numbers to ~1e-15 (tests/test_mode.py). `minibasis.debug.break_in("conv2d")` sets a
#    breakpoint on the first line of `conv_reference.conv2d`. A `step` from a line that calls
#    `conv2d` gets there too, but only after autograd's wrapper and the argument checks (the
#    README, "Two forms of every kernel", counts the steps).
# 2. **Boxes.** Under `autograd.grad` the activations are `ArrayBox`es: `p out` prints a box.
#    `minibasis.debug.value(out)` is the array inside, `minibasis.debug.show(out)` a summary.
#    pdb reads one-letter names as commands (`p`, `s`, `n`, `c`, `l`, `b`, `h`…): print such a
#    variable with `p name` or `!name`.
#
# Below, the session is *scripted* (pdb reads its commands from a string) so that the tests can
# run it; its transcript is what you would see typing the same commands. To do it yourself,
# start this tutorial under pdb, set the breakpoint and continue:
#
#     $ MINIBASIS_REFERENCE=1 python -m pdb tutorials/09_stepping_through_in_a_debugger.py
#     (Pdb) !import minibasis.debug
#     (Pdb) !minibasis.debug.break_in("conv2d")
#     (Pdb) continue
#
# pdb stops at the first line of `conv_reference.conv2d`, in the model's first convolution of
# the training step below (`p x.shape, w.shape` prints `((2, 3, 8, 8), (16, 3, 3, 3))`); each
# `continue` stops at the next convolution. Under your debugger this tutorial does not run its
# scripted session: the training step runs under yours, with your breakpoints. Or put
# `minibasis.debug.break_in("conv2d")` in your own script: it starts pdb itself.
#
# **Time.** About 2 s, in full mode and with `MINIBASIS_FAST=1` alike. No figures.

# %%
import inspect
import io
import pdb

import autograd
import numpy as np

import minibasis
from minibasis import basis, conv_reference
from minibasis.debug import running_debugger
from minibasis.layers import cross_entropy
from minibasis.models import create_model
from tutorial_setup import FAST  # this checkout's minibasis, the mode, the paths

print(f"mode: {'FAST' if FAST else 'full'}")

# %% [markdown]
# ## 1. The step we will stop in
#
# A ResNet14 with S2U1 bases (two shared bases of 2·m filters per stage, 1·m unique filters per
# layer; m = 1 in stage 1), float64, two 8×8 images. One training step: the gradient of the
# cross-entropy plus λ·R with respect to every parameter.

# %%
model = create_model("resnet14-s2u1", num_classes=3)
params, state = model.init(seed=0, dtype=np.float64)
x = np.random.default_rng(0).standard_normal((2, 3, 8, 8))
labels = np.array([0, 2])


def loss(params):
    logits, _ = model.apply(params, state, x, train=True)
    return cross_entropy(logits, labels) + 10.0 * model.orthogonality(params)


def training_step():
    with minibasis.reference_mode():
        return autograd.grad(loss)(params)


# %% [markdown]
# ## 2. The session
#
# Breakpoints go on source lines, found here by their text so that the tutorial survives edits:
# the basis layer's convolution, the end of im2col, and the accumulation inside col2im's loop.
# They are temporary (`tbreak`: deleted once reached), so the session removes nothing else.
# The backward pass runs the network from its end, so the col2im breakpoint has a condition
# (`tbreak FILE:LINE, C == 16 and kh == 3 and Ho == 8`): the first 3×3 convolution of stage 1
# it meets (stage 2's first convolution also reads 16 channels, but gives 4×4 outputs).


# %%
def line_of(module, text):
    """``file:line`` of the first line of ``module`` containing ``text``."""
    lines = inspect.getsource(module).splitlines()
    number = next(i + 1 for i, line in enumerate(lines) if text in line)
    return f"{inspect.getsourcefile(module)}:{number}"


BASIS_CONV = line_of(basis, "out = conv2d(x, basis")
IM2COL_END = line_of(conv_reference, "return cols.reshape(N * Ho * Wo")
COL2IM_ADD = line_of(conv_reference, "xpad[:, :, i : i + sh * Ho : sh, j : j + sw * Wo : sw] +=")

SESSION = f"""
tbreak {BASIS_CONV}
continue
!from minibasis.debug import show, value
!show(x)
p value(basis).shape
p params["unique_basis"] is None, value(params["shared_basis"]).shape
tbreak {IM2COL_END}
continue
p cols.shape
p cols.reshape(N * Ho * Wo, C * kh * kw).shape
p np.round(cols[0, 0, 0, 0], 2) + 0.0
tbreak {COL2IM_ADD}, C == 16 and kh == 3 and Ho == 8
continue
p (i, j), cols.shape
p cols.reshape(N * Ho * Wo, C * kh * kw).shape
next
next
p (i, j)
continue
"""
if running_debugger() is None:
    print("pdb commands:" + SESSION)
    transcript = io.StringIO()
    debugger = pdb.Pdb(stdin=io.StringIO(SESSION), stdout=transcript, nosigint=True, readrc=False)
    gradients = debugger.runcall(training_step)
    text = transcript.getvalue()
    print(text)
else:  # `python -m pdb` (do it yourself): the step runs under your debugger, your breakpoints kept
    print("running under your debugger: the scripted session is skipped")
    gradients, text = training_step(), None

# %% [markdown]
# ## 3. What the session showed
#
# - At the first basis layer (block 1 of stage 1) the input is a traced `ArrayBox` of shape
#   (2, 16, 8, 8); the layer's basis stacks 1 unique and 2 shared filters: (3, 16, 3, 3).
# - im2col of that convolution: one row per output pixel (2·8·8 = 128), one column per weight
#   of a filter (16·3·3 = 144). The first receptive field (pixel (0, 0), channel 0) has a zero
#   first row and column: the padding.
# - The backward pass reached col2im, the adjoint loop, in the last 3×3 convolution of stage 1
#   (block 1's second basis layer: 16 input channels), at kernel offset (0, 0); two `next`s
#   later it was at offset (0, 1): one strided addition per kernel offset.

# %%
if text is not None:
    assert "ArrayBox float64 (2, 16, 8, 8)" in text, "the basis layer's input is a traced (2, 16, 8, 8) array"
    assert "(3, 16, 3, 3)" in text, "the stacked basis [U; S]: 1 unique + 2 shared filters"
    assert "(128, 144)" in text, "im2col: N·Ho·Wo = 128 rows, C·kh·kw = 144 columns"
    assert "((0, 0), (2, 8, 8, 16, 3, 3))" in text, "col2im starts at kernel offset (0, 0)"
    assert text.count("(0, 1)") >= 1, "two steps later the loop is at offset (0, 1)"
reference = autograd.grad(loss)(params)  # the fast forms, no debugger
worst = max(float(np.max(np.abs(gradients[k]["weight"] - reference[k]["weight"]))) for k in ("conv1", "fc"))
assert worst < 1e-12, "the debugged reference-mode step gives the fast step's gradients"
print(f"reference-mode gradients = fast gradients to {worst:.1e}")
