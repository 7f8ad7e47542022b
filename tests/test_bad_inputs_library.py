"""The bad-input table, library rows: each a call (see ``bad_inputs.py``), refused with a
one-line exception that names the argument or the file. Every pure bad-argument refusal of a
library call lives here; file damage and process-level refusals (locks, signals, memory limits,
damaged run folders) live with test_files, test_runs, test_train, test_kill_resume and test_weights."""

from dataclasses import replace

import autograd.numpy as anp
import numpy as np
import pytest
from test_bad_inputs_cli import CLI

from minibasis import backend, debug, runs
from minibasis.autodiff import gradient_and_aux, tree_vjp
from minibasis.basis import decompose, shared_decompose, shared_orthogonality_loss
from minibasis.conv import conv2d, conv2d_input_grad
from minibasis.data import DATASETS
from minibasis.files import FolderBusy
from minibasis.layers import (
    avg_pool2d,
    batch_norm,
    batch_norm_state,
    cross_entropy,
    dropout,
    efficient_channel_attention,
    global_avg_pool,
    linear,
    max_pool2d,
    shortcut_a,
)
from minibasis.mode import reference_mode
from minibasis.models import create_model
from minibasis.optim import cosine_lr, learning_rate, sgd_step, step_lr
from minibasis.parallel import set_threads
from minibasis.progress import Progress
from minibasis.testing import check_gradients
from minibasis.train import TrainConfig, evaluate, train
from minibasis.weights import load_weights, read_npz, save_weights
from support.bad_inputs import QUIET, Row, expected_start, forged, make_world, params, placed


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    yield from make_world(tmp_path_factory)


P, G = {"w": np.zeros((2, 3))}, {"w": np.ones((2, 3))}
MEAN, STD = DATASETS["cifar10"].mean, DATASETS["cifar10"].std

X, W = np.zeros((1, 2, 5, 5)), np.zeros((3, 2, 3, 3))
FILTERS_A, FILTERS_B = np.ones((4, 2, 3, 3)), np.ones((3, 2, 3, 3))
NAN_FILTERS = np.where(np.arange(18).reshape(2, 1, 3, 3) == 4, np.nan, 1.0)  # one NaN, as filters [0, 0, 1, 1]

# Each a spec create_model refuses, and what its message must say is valid.
BAD_SPECS = [
    ("cifar100-resnet34-s16u1", "variants of resnet34"),
    ("imagenet-resnet34-s48u0", "variants of resnet34"),
    ("imagenet-resnet50-s16u1", "variants of resnet50"),
    ("imagenet-resnet34-shared", "variants of resnet34"),
    ("cifar100-resnet50", "depth in (18, 34)"),
    ("imagenet-resnet152", "depth in (18, 34, 50, 101)"),
    ("mobilenetv2", "'imagenet-mobilenetv2' or 'cifar100-mobilenetv2'"),
    ("cifar100-mobilenetv2-s16u1", "'imagenet-mobilenetv2' or 'cifar100-mobilenetv2'"),
    ("cifar100-resnext50-single-s64u2", "U a multiple of 4"),
    ("cifar100-resnext50-single-s64u12", "U a multiple of 4"),
    ("cifar100-resnext50-single-s2u4", "S ≥ 4"),
    ("cifar100-resnext50-s64u4", "-single-s{S}u{U}"),
    ("imagenet-resnext50", "'cifar100-resnext50'"),
    ("cifar100-resnext101", "'cifar100-resnext50'"),
    ("cifar100-densenet169", "'cifar100-densenet121'"),
    ("cifar100-densenet121-single-s16u0", "U ≥ 1"),
    ("cifar100-densenet121-shared", "'cifar100-densenet121-single-s{S}u{U}'"),
    ("imagenet-mobilenetv2-s16u1", "imagenet-mobilenetv2"),
    ("resnet56-shared", "basis variant"),
    ("resnet8-s16u1", "one block per stage"),
    ("resnet99999999999999999999992", "depth ≤ 1202"),
    ("resnet1208", "depth ≤ 1202"),
    ("resnet56-s300u1", "S, U ≤ 256"),
]


def apply_resnet20_s16u1(shape):
    model = create_model("resnet20-s16u1")
    return model.apply(*model.init(seed=0), np.zeros(shape, np.float32), train=False)


LIBRARY = [
    Row(
        "conv2d stride=1.5",
        lambda w: conv2d(X, W, stride=1.5),
        "stride",
        "expected an int ≥ 1 or a pair of them, got 1.5",
    ),
    Row("conv2d stride=True", lambda w: conv2d(X, W, stride=True), "stride", "got True"),
    Row(
        "conv2d padding=None",
        lambda w: conv2d(X, W, padding=None),
        "padding",
        "expected an int ≥ 0 or a pair of them, got None",
    ),
    Row(
        "conv2d of a 0×0 kernel", lambda w: conv2d(X, np.zeros((3, 2, 0, 0))), "w", "expected a kernel of at least 1×1"
    ),
    Row(
        "conv2d groups not dividing the channels",
        lambda w: conv2d(X, np.zeros((3, 1, 3, 3)), groups=2),
        "groups",
        "expected a divisor",
    ),
    Row(
        "conv2d of mixed dtypes",
        lambda w: conv2d(X.astype(np.float32), W),
        "w",
        "expected dtype float32 (that of x; no silent casts), got float64",
    ),
    # moved from test_conv.py: each conv2d argument is checked before any work
    Row(
        "conv2d of a 3-d x", lambda w: conv2d(np.zeros((1, 2, 5)), W), "x", "expected 4 dimensions, got shape (1, 2, 5)"
    ),
    Row(
        "conv2d of a 3-d w", lambda w: conv2d(X, np.zeros((3, 2, 3))), "w", "expected 4 dimensions, got shape (3, 2, 3)"
    ),
    Row(
        "conv2d of a w with other channels",
        lambda w: conv2d(X, np.zeros((3, 4, 3, 3))),
        "w",
        "expected 2 input channels",
    ),
    Row("conv2d stride=0", lambda w: conv2d(X, W, stride=0), "stride", "expected an int ≥ 1 or a pair of them, got 0"),
    Row("conv2d stride of 3 ints", lambda w: conv2d(X, W, stride=(1, 2, 3)), "stride", "got (1, 2, 3)"),
    Row(
        "conv2d padding=-1",
        lambda w: conv2d(X, W, padding=-1),
        "padding",
        "expected an int ≥ 0 or a pair of them, got -1",
    ),
    Row(
        "conv2d of a kernel larger than the input",
        lambda w: conv2d(np.zeros((1, 2, 2, 5)), W),
        "w",
        "expected a kernel no larger than the padded input",
    ),
    Row(
        "conv2d of a kernel larger than the padded input",
        lambda w: conv2d(np.zeros((1, 2, 2, 5)), np.zeros((3, 2, 5, 3)), padding=1),
        "w",
        "expected a kernel no larger than the padded input (2 + 2·1 = 4 along axis 2), got 5",
    ),
    Row(
        "conv2d of a w with other channels per group",
        lambda w: conv2d(np.zeros((1, 4, 5, 5)), np.zeros((4, 4, 3, 3)), groups=2),
        "w",
        "expected 2 input channels per group",
    ),
    Row(
        "conv2d groups=0",
        lambda w: conv2d(np.zeros((1, 4, 5, 5)), np.zeros((4, 1, 3, 3)), groups=0),
        "groups",
        "expected an int ≥ 1, got 0",
    ),
    Row(
        "conv2d groups=4.0",
        lambda w: conv2d(np.zeros((1, 4, 5, 5)), np.zeros((4, 1, 3, 3)), groups=4.0),
        "groups",
        "expected an int ≥ 1, got 4.0",
    ),
    # moved from test_layers.py
    Row(
        "cross_entropy of a label ≥ the classes",
        lambda w: cross_entropy(np.zeros((2, 3)), np.array([0, 3])),
        "labels",
        "expected values in [0, 3), got values in [0, 3]",
    ),
    Row(
        "cross_entropy of float labels",
        lambda w: cross_entropy(np.zeros((2, 3)), np.array([0.0, 1.0])),
        "labels",
        "expected an integer dtype, got float64",
    ),
    Row(
        "cross_entropy of a negative label",
        lambda w: cross_entropy(np.zeros((2, 3)), np.array([0, -1])),
        "labels",
        "got values in [-1, 0]",
    ),
    Row(
        "cross_entropy of too few labels",
        lambda w: cross_entropy(np.zeros((2, 3)), np.array([0])),
        "labels",
        "expected shape (2,) (one per row of logits), got shape (1,)",
    ),
    Row(
        "cross_entropy of 1-d logits",
        lambda w: cross_entropy(np.zeros(3), np.array([0])),
        "logits",
        "expected 2 dimensions, got shape (3,)",
    ),
    Row(
        "shortcut_a out_channels=C+odd",
        lambda w: shortcut_a(np.zeros((1, 4, 2, 2)), out_channels=7),
        "out_channels",
        "expected C + an even number ≥ 0 (C = 4), got 7",
    ),
    Row(
        "batch_norm training on 1 value per channel",
        lambda w: batch_norm(np.zeros((1, 2, 1, 1)), np.ones(2), np.zeros(2), batch_norm_state(2), train=True),
        "x",
        "expected more than 1 value per channel in training mode",
    ),
    Row(
        "batch_norm of a weight with other channels",
        lambda w: batch_norm(np.zeros((2, 2, 2, 2)), np.ones(3), np.zeros(2), batch_norm_state(2), train=True),
        "weight",
        "expected shape (2,) (the channels of x), got shape (3,)",
    ),
    Row(
        "batch_norm of a 3-d x",
        lambda w: batch_norm(np.zeros((2, 2, 2)), np.ones(2), np.zeros(2), batch_norm_state(2), train=True),
        "x",
        "expected 4 dimensions, got shape (2, 2, 2)",
    ),
    Row(
        "linear of a weight with other inputs",
        lambda w: linear(np.zeros((2, 3)), np.zeros((4, 2)), np.zeros(4)),
        "weight",
        "expected shape (out, 3) for x of shape (2, 3), got shape (4, 2)",
    ),
    Row(
        "linear of a bias with other outputs",
        lambda w: linear(np.zeros((2, 3)), np.zeros((4, 3)), np.zeros(3)),
        "bias",
        "expected shape (4,), got shape (3,)",
    ),
    Row(
        "global_avg_pool of a 2-d x",
        lambda w: global_avg_pool(np.zeros((2, 3))),
        "x",
        "expected 4 dimensions, got shape (2, 3)",
    ),
    Row(
        "max_pool2d stride=0",
        lambda w: max_pool2d(np.zeros((1, 1, 4, 4)), stride=0),
        "stride",
        "expected an int ≥ 1 or a pair of them, got 0",
    ),
    Row(
        "max_pool2d of a 3-d x",
        lambda w: max_pool2d(np.zeros((1, 4, 4))),
        "x",
        "expected 4 dimensions, got shape (1, 4, 4)",
    ),
    Row(
        "efficient_channel_attention of an even kernel",
        lambda w: efficient_channel_attention(np.zeros((1, 4, 2, 2)), np.zeros((1, 1, 2))),
        "weight",
        "expected shape (1, 1, k) with k odd (a Conv1d(1, 1, k)), got shape (1, 1, 2)",
    ),
    Row(
        "efficient_channel_attention of 2 kernels",
        lambda w: efficient_channel_attention(np.zeros((1, 4, 2, 2)), np.zeros((2, 1, 3))),
        "weight",
        "got shape (2, 1, 3)",
    ),
    Row(
        "dropout rng=0",
        lambda w: dropout(np.zeros(3), rate=0.5, rng=0),
        "rng",
        "expected None or a numpy.random.Generator, got int",
        TypeError,
    ),
    # moved from test_optim.py: the whole message is fixed
    Row(
        "sgd_step lr=-0.1",
        lambda w: sgd_step(P, G, None, lr=-0.1),
        "lr",
        "expected a finite real number ≥ 0, got -0.1",
        exact=True,
    ),
    Row(
        'sgd_step lr=float("nan")',
        lambda w: sgd_step(P, G, None, lr=float("nan")),
        "lr",
        "expected a finite real number ≥ 0, got nan",
        exact=True,
    ),
    Row(
        'sgd_step lr="0.1"',
        lambda w: sgd_step(P, G, None, lr="0.1"),
        "lr",
        "expected a finite real number ≥ 0, got '0.1'",
        exact=True,
    ),
    Row(
        "sgd_step lr=True",
        lambda w: sgd_step(P, G, None, lr=True),
        "lr",
        "expected a finite real number ≥ 0, got True",
        exact=True,
    ),
    Row(
        "sgd_step lr=0.1, momentum=-0.5",
        lambda w: sgd_step(P, G, None, lr=0.1, momentum=-0.5),
        "momentum",
        "expected a finite real number ≥ 0, got -0.5",
        exact=True,
    ),
    Row(
        "sgd_step lr=0.1, weight_decay=-1e-4",
        lambda w: sgd_step(P, G, None, lr=0.1, weight_decay=-1e-4),
        "weight_decay",
        "expected a finite real number ≥ 0, got -0.0001",
        exact=True,
    ),
    Row(
        "sgd_step lr=0.1, momentum=0.0, nesterov=True",
        lambda w: sgd_step(P, G, None, lr=0.1, momentum=0.0, nesterov=True),
        "nesterov",
        "expected momentum > 0 and dampening == 0 with nesterov=True, got momentum=0.0, dampening=0.0",
        exact=True,
    ),
    Row(
        "sgd_step lr=0.1, nesterov=True, dampening=0.1",
        lambda w: sgd_step(P, G, None, lr=0.1, nesterov=True, dampening=0.1),
        "nesterov",
        "expected momentum > 0 and dampening == 0 with nesterov=True, got momentum=0.9, dampening=0.1",
        exact=True,
    ),
    Row(
        'sgd_step lr=0.1, nesterov="yes"',
        lambda w: sgd_step(P, G, None, lr=0.1, nesterov="yes"),
        "nesterov",
        "expected True or False, got 'yes'",
        exact=True,
    ),
    Row(
        'sgd_step lr=0.1, dampening=float("inf")',
        lambda w: sgd_step(P, G, None, lr=0.1, dampening=float("inf")),
        "dampening",
        "expected a finite real number, got inf",
        exact=True,
    ),
    Row(
        "step_lr(-1, base_lr=0.1, epochs=300)",
        lambda w: step_lr(-1, base_lr=0.1, epochs=300),
        "epoch",
        "expected an int ≥ 0, got -1",
        exact=True,
    ),
    Row(
        "step_lr(1.5, base_lr=0.1, epochs=300)",
        lambda w: step_lr(1.5, base_lr=0.1, epochs=300),
        "epoch",
        "expected an int ≥ 0, got 1.5",
        exact=True,
    ),
    Row(
        "step_lr(0, base_lr=0.1, epochs=0)",
        lambda w: step_lr(0, base_lr=0.1, epochs=0),
        "epochs",
        "expected an int ≥ 1, got 0",
        exact=True,
    ),
    Row(
        "step_lr(0, base_lr=-0.1, epochs=300)",
        lambda w: step_lr(0, base_lr=-0.1, epochs=300),
        "base_lr",
        "expected a finite real number ≥ 0, got -0.1",
        exact=True,
    ),
    Row(
        "step_lr(0, base_lr=0.1, epochs=300, milestones=(150, 225))",
        lambda w: step_lr(0, base_lr=0.1, epochs=300, milestones=(150, 225)),
        "milestones",
        "expected a sequence of fractions of the epochs in [0, 1] (e.g. (0.5, 0.75)), got (150, 225)",
        exact=True,
    ),
    Row(
        "step_lr(0, base_lr=0.1, epochs=300, milestones=0.5)",
        lambda w: step_lr(0, base_lr=0.1, epochs=300, milestones=0.5),
        "milestones",
        "expected a sequence of fractions of the epochs in [0, 1] (e.g. (0.5, 0.75)), got 0.5",
        exact=True,
    ),
    Row(
        "step_lr(0, base_lr=0.1, epochs=300, gamma=0.0)",
        lambda w: step_lr(0, base_lr=0.1, epochs=300, gamma=0.0),
        "gamma",
        "expected a real number > 0, got 0.0",
        exact=True,
    ),
    Row(
        "cosine_lr(-2, base_lr=0.1, epochs=300)",
        lambda w: cosine_lr(-2, base_lr=0.1, epochs=300),
        "epoch",
        "expected an int ≥ 0, got -2",
        exact=True,
    ),
    Row(
        "cosine_lr(0, base_lr=0.1, epochs=300, eta_min=-1.0)",
        lambda w: cosine_lr(0, base_lr=0.1, epochs=300, eta_min=-1.0),
        "eta_min",
        "expected a finite real number ≥ 0, got -1.0",
        exact=True,
    ),
    Row(
        "cosine_lr(0, base_lr=0.1, epochs=True)",
        lambda w: cosine_lr(0, base_lr=0.1, epochs=True),
        "epochs",
        "expected an int ≥ 1, got True",
        exact=True,
    ),
    Row(
        'learning_rate("constant", -1, base_lr=0.1, epochs=3)',
        lambda w: learning_rate("constant", -1, base_lr=0.1, epochs=3),
        "epoch",
        "expected an int ≥ 0, got -1",
        exact=True,
    ),
    Row(
        'learning_rate("constant", 0, base_lr=-1, epochs=3)',
        lambda w: learning_rate("constant", 0, base_lr=-1, epochs=3),
        "base_lr",
        "expected a finite real number ≥ 0, got -1",
        exact=True,
    ),
    Row(
        'learning_rate("linear", 0, base_lr=0.1, epochs=3)',
        lambda w: learning_rate("linear", 0, base_lr=0.1, epochs=3),
        "schedule",
        "expected one of 'step', 'cosine', 'constant', got 'linear'",
        exact=True,
    ),
    # moved from test_basis.py, test_testing.py, test_debugger.py and test_autodiff.py
    Row(
        "shared_orthogonality_loss of no shared basis",
        lambda w: shared_orthogonality_loss([[], []]),
        "stages",
        "expected at least one shared basis, got none",
    ),
    *[
        Row(
            f"decompose rank={rank}",
            lambda w, rank=rank: decompose(FILTERS_A, rank),
            "rank",
            f"expected 1 ≤ rank ≤ 4 for W of shape (4, 2, 3, 3), got {rank}",
        )
        for rank in (0, -1, 5, 10)
    ],
    Row(
        "shared_decompose of filters with other channels",
        lambda w: shared_decompose([FILTERS_A, np.zeros((3, 3, 3, 3))], 2, 1),
        "filters[1]",
        "expected shape (O, 2, 3, 3), got shape (3, 3, 3, 3)",
    ),
    Row(
        "shared_decompose of filters of another kernel",
        lambda w: shared_decompose([FILTERS_A, FILTERS_B, np.zeros((3, 2, 1, 1))], 2, 1),
        "filters[2]",
        "got shape (3, 2, 1, 1)",
    ),
    Row(
        "shared_decompose of 3-d filters",
        lambda w: shared_decompose([FILTERS_A, np.zeros((3, 2, 3))], 2, 1),
        "filters[1]",
        "got shape (3, 2, 3)",
    ),
    Row(
        "shared_decompose of no filters",
        lambda w: shared_decompose([], 2, 1),
        "filters",
        "expected at least one weight array, got none",
    ),
    *[
        Row(
            f"shared_decompose ranks {ranks}",
            lambda w, ranks=ranks: shared_decompose([FILTERS_A, FILTERS_B], *ranks),
            "shared_rank, unique_rank",
            "expected ranks ≥ 0 with 0 < sum ≤ C·kh·kw = 18",
        )
        for ranks in ((-1, 1), (19, 0), (2, 19), (0, 0), (2, -1))
    ],
    Row(
        "shared_decompose ranks summing past the dimension",
        lambda w: shared_decompose([np.zeros((4, 1, 3, 3))], 5, 5),
        "shared_rank, unique_rank",
        "expected ranks ≥ 0 with 0 < sum ≤ C·kh·kw = 9, got 5, 5",
    ),
    Row("decompose of NaN filters", lambda w: decompose(NAN_FILTERS, 1), "W", "expected finite values"),
    Row(
        "shared_decompose of NaN filters",
        lambda w: shared_decompose([np.ones((2, 1, 3, 3)), NAN_FILTERS], 1, 1),
        "filters[1]",
        "expected finite values",
    ),
    Row(
        "check_gradients of float32",
        lambda w: check_gradients(lambda x: anp.sum(x), np.ones(3, np.float32)),
        "x",
        "expected a float64 array for finite differences, got float32",
    ),
    Row(
        "check_gradients mode='forward'",
        lambda w: check_gradients(lambda x: anp.sum(x), np.ones(3), mode="forward"),
        "mode",
        "got 'forward'",
    ),
    Row(
        "check_gradients wrt=[1]",
        lambda w: check_gradients(lambda x: anp.sum(x), np.ones(3), wrt=[1]),
        "wrt",
        "expected an int in [0, 0], got 1",
    ),
    Row(
        "debug.break_in of an unknown kernel", lambda w: debug.break_in("conv3d"), "name", "expected one of 'conv2d', "
    ),
    Row("debug.break_in of an unknown kernel names it", lambda w: debug.break_in("conv3d"), "name", "got 'conv3d'"),
    Row(
        "gradient_and_aux of a constant loss",
        lambda w: gradient_and_aux(lambda p, z: (np.float64(1.0), (0.0, np.zeros(1), {})))({"w": np.ones(2)}, 0),
        "loss_fn",
        "expected an output that depends on the tree, got a constant",
        exact=True,
    ),
    Row(
        "gradient_and_aux of a non-scalar loss",
        lambda w: gradient_and_aux(lambda p, z: (p["w"] * 2, (0.0, np.zeros(1), {})))({"w": np.ones(2)}, 0),
        "loss_fn",
        "expected a scalar loss, got shape (2,)",
        exact=True,
    ),
    # moved from tests/models/test_zoo.py and test_models.py
    *[
        Row(
            f"create_model of the bad spec {spec!r}",
            lambda w, spec=spec: create_model(spec),
            "spec",
            ("expected", fragment, "valid model specs"),
        )
        for spec, fragment in BAD_SPECS
    ],
    Row(
        "avg_pool2d kernel_size=0",
        lambda w: avg_pool2d(np.zeros((1, 1, 4, 4)), kernel_size=0),
        "kernel_size",
        "expected an int ≥ 1, got 0",
    ),
    *[
        Row(
            f"model.apply of x of shape {shape}",
            lambda w, shape=shape: apply_resnet20_s16u1(shape),
            "x",
            f"got shape {shape}",
        )
        for shape in ((2, 32, 32), (2, 1, 32, 32), (2, 4, 8, 8), (3, 32, 32, 1))
    ],
    Row(
        "conv2d_input_grad of a weight with other channels",
        lambda w: conv2d_input_grad(np.zeros((1, 3, 3, 3)), np.zeros((3, 4, 3, 3)), x_shape=(1, 2, 5, 5)),
        "w",
        "expected 2 input channels",
    ),
    Row(
        "create_model num_classes=True", lambda w: create_model("resnet20", num_classes=True), "num_classes", "got True"
    ),
    Row(
        "model.apply of another model's params",
        lambda w: create_model("resnet8").apply(
            *create_model("resnet14-s2u1").init(0), np.zeros((1, 3, 8, 8), np.float32), train=False
        ),
        "params",
        "expected only the leaves of resnet8, got an unexpected leaf 'shared_basis_1_1.weight'",
    ),
    Row(
        "model.apply of a float64 input to float32 params",
        lambda w: create_model("resnet8").apply(*create_model("resnet8").init(0), np.zeros((1, 3, 8, 8)), train=False),
        "x",
        "cast the input with x.astype(numpy.float32)",
    ),
    Row(
        "load_weights of NaN weights",
        lambda w: load_weights(
            w.file("w.npz", lambda p: np.savez(p, **w.weights_with(**{"fc.bias": np.full(10, np.nan, np.float32)}))),
            create_model("resnet8"),
        ),
        "{here}/w.npz",
        "key 'fc.bias': expected finite values, got 10 NaN/inf",
    ),
    Row(
        "load_weights of a negative running_var",
        lambda w: load_weights(
            w.file("w.npz", lambda p: np.savez(p, **w.weights_with(**{"bn1.running_var": -np.ones(16, np.float32)}))),
            create_model("resnet8"),
        ),
        "{here}/w.npz",
        "expected a variance ≥ 0",
    ),
    Row(
        "load_weights of float32 and float64 arrays",
        lambda w: load_weights(
            w.file("w.npz", lambda p: np.savez(p, **w.weights_with(**{"fc.bias": np.zeros(10)}))),
            create_model("resnet8"),
        ),
        "{here}/w.npz",
        "expected one floating dtype for all arrays",
    ),
    Row(
        "max_pool2d padding above half the kernel",
        lambda w: max_pool2d(X, kernel_size=3, padding=2),
        "padding",
        "at most half the kernel",
    ),
    Row("dropout rate=1.5", lambda w: dropout(X, rate=1.5, rng=np.random.default_rng(0)), "rate", "in [0, 1], got 1.5"),
    Row(
        "reference_mode('yes')",
        lambda w: reference_mode("yes").__enter__(),
        "enabled",
        "expected True or False, got 'yes'",
    ),
    Row("set_threads(0)", lambda w: set_threads(0), "threads", "expected an int ≥ 1, got 0"),
    Row("sgd_step lr=-1", lambda w: sgd_step(P, G, lr=-1), "lr", "expected a finite real number ≥ 0, got -1"),
    Row(
        "sgd_step nesterov without momentum",
        lambda w: sgd_step(P, G, lr=0.1, momentum=0, nesterov=True),
        "nesterov",
        "momentum=0.0",
    ),
    Row(
        "sgd_step grads of another shape",
        lambda w: sgd_step(P, {"w": np.ones(3)}, lr=0.1),
        "grads['w']",
        "expected shape (2, 3)",
    ),
    Row("sgd_step grads as a list", lambda w: sgd_step(P, [np.ones((2, 3))], lr=0.1), "grads", "got list", TypeError),
    Row("step_lr gamma=0", lambda w: step_lr(0, base_lr=0.1, epochs=3, gamma=0), "gamma", "expected a real number > 0"),
    Row(
        "step_lr epochs as milestones",
        lambda w: step_lr(0, base_lr=0.1, epochs=300, milestones=(150, 225)),
        "milestones",
        "fractions",
    ),
    Row("cosine_lr eta_min=-1", lambda w: cosine_lr(0, base_lr=0.1, epochs=3, eta_min=-1), "eta_min", "got -1"),
    Row(
        "learning_rate of an unknown schedule",
        lambda w: learning_rate("linear", 0, base_lr=0.1, epochs=3),
        "schedule",
        "got 'linear'",
    ),
    Row("TrainConfig epochs=True", lambda w: TrainConfig(epochs=True).check(), "epochs", "got True"),
    Row("TrainConfig batch_size=1.5", lambda w: TrainConfig(batch_size=1.5).check(), "batch_size", "got 1.5"),
    Row(
        "train stop_after=0", lambda w: train(TrainConfig(), w.root / "x", stop_after=0, **QUIET), "stop_after", "got 0"
    ),
    Row(
        "train overwrite=1",
        lambda w: train(TrainConfig(), w.root / "x", overwrite=1, **QUIET),
        "overwrite",
        "expected True or False, got 1",
    ),
    Row(
        "train progress_every=-1",
        lambda w: train(TrainConfig(), w.root / "x", progress_every=-1, **QUIET),
        "progress_every",
        "got -1",
    ),
    Row(
        "train into a folder in use",
        lambda w: train(
            replace(TrainConfig(), model="resnet8", train_size=10, test_size=10, epochs=1, batch_size=10),
            w.locked(),
            data_path=w.archive,
            **QUIET,
        ),
        "{here}",
        "locked by PID",
        FolderBusy,
    ),
    Row(
        "load_checkpoint of a text file",
        lambda w: runs.load_checkpoint(w.file("checkpoint.npz", b"hello"), create_model("resnet8")),
        "{here}/checkpoint.npz",
        "expected a minibasis checkpoint .npz, got a file that is not a zip archive",
    ),
    Row(
        "read_log of a record out of order",
        lambda w: runs.read_log(w.file("log.jsonl", b'{"epoch": 2}\n')),
        "{here}/log.jsonl, line 1",
        "got epoch 2",
    ),
    Row(
        "read_config of a JSON list",
        lambda w: runs.read_config(w.file("config.json", b"[]")),
        "{here}/config.json",
        "expected a JSON object",
    ),
    Row(
        "rng_from_json of a number",
        lambda w: runs.rng_from_json("7", "state"),
        "state",
        "expected the JSON state of numpy's PCG64",
    ),
    Row(
        "read_npz of pickled objects",
        lambda w: read_npz(w.file("a.npz", lambda p: np.savez(p, a=np.array([{}], dtype=object)))),
        "{here}/a.npz",
        "Object arrays cannot be loaded",
    ),
    Row(
        "read_npz of a missing file",
        lambda w: read_npz(w.root / "none.npz"),
        "{root}/none.npz",
        "expected an .npz file",
        FileNotFoundError,
    ),
    Row(
        "tree_vjp of a constant",
        lambda w: tree_vjp(lambda t: np.float64(1.0), {"w": np.ones(2)}),
        "fn",
        "expected an output that depends on the tree",
    ),
    Row(
        "gradient_and_aux of a vector loss",
        lambda w: gradient_and_aux(lambda p: (p["w"] * 2, None))({"w": np.ones(2)}),
        "loss_fn",
        "expected a scalar loss",
    ),
    Row("Progress every=-1", lambda w: Progress("x", 3, every=-1), "every", "got -1"),
    Row("Progress total=-1", lambda w: Progress("x", -1), "total", "got -1"),
    # moved from test_progress.py and test_backend.py
    Row(
        "Progress every=-1 (whole message)",
        lambda w: Progress("x", 3, every=-1),
        "every",
        "expected a finite real number ≥ 0, got -1",
        exact=True,
    ),
    Row(
        "Progress every='5'",
        lambda w: Progress("x", 3, every="5"),
        "every",
        "expected a finite real number ≥ 0, got '5'",
        exact=True,
    ),
    Row("Progress total=-3", lambda w: Progress("x", -3), "total", "expected an int ≥ 0, got -3", exact=True),
    Row("backend.get of an unknown device", lambda w: backend.get("tpu"), "device", "got 'tpu'"),
    Row(
        "load_weights of a .npy",
        lambda w: load_weights(w.file("w.npz", lambda p: np.save(open(p, "wb"), np.ones(2))), create_model("resnet8")),
        "{here}/w.npz",
        "got a single .npy array",
    ),
    Row(
        "load_weights of a text file",
        lambda w: load_weights(w.file("w.npz", b"hello"), create_model("resnet8")),
        "{here}/w.npz",
        "got a file that is not a zip archive",
    ),
    # forged files, empty inputs, wrong types, dtypes, shapes and values
    Row(
        "load_weights of a 300-byte .npz declaring 745 GiB",
        lambda w: load_weights(w.file("w.npz", forged), create_model("resnet8")),
        "{here}/w.npz",
        "declares shape (100000000000,)",
    ),
    Row(
        "evaluate of no images",
        lambda w: evaluate(*w.resnet8(), np.zeros((0, 3, 32, 32), np.uint8), np.zeros(0, np.int64), mean=MEAN, std=STD),
        "images",
        "expected at least one image to evaluate, got none",
    ),
    Row(
        "model.apply train='False'",
        lambda w: w.resnet8()[0].apply(*w.resnet8()[1:], np.zeros((1, 3, 8, 8), np.float32), train="False"),
        "train",
        "expected True or False, got 'False'",
    ),
    Row(
        "model.apply of a float64 fc.weight among float32",
        lambda w: w.resnet8()[0].apply(*w.resnet8(fc64=True)[1:], np.zeros((1, 3, 8, 8), np.float32), train=False),
        "params['fc.weight']",
        "expected dtype float32 (that of conv1.weight; float32 or float64, one for all: no silent casts), got float64",
    ),
    Row(
        "batch_norm train='False'",
        lambda w: batch_norm(np.zeros((2, 3, 2, 2)), np.ones(3), np.zeros(3), batch_norm_state(3), train="False"),
        "train",
        "expected True or False, got 'False'",
    ),
    Row(
        "batch_norm relu=1",
        lambda w: batch_norm(np.zeros((2, 3, 2, 2)), np.ones(3), np.zeros(3), batch_norm_state(3), train=False, relu=1),
        "relu",
        "expected True or False, got 1",
    ),
    Row(
        "model.init dtype=float16",
        lambda w: create_model("resnet8").init(0, dtype=np.float16),
        "dtype",
        "expected numpy.float32 or numpy.float64, got float16",
    ),
    Row(
        "save_weights of NaN parameters",
        lambda w: save_weights(w.folder() / "w.npz", *w.resnet8(nan=True)),
        "{here}/w.npz",
        "refusing to write weights that would not load: key 'fc.bias': expected finite values",
    ),
    Row(
        "create_model num_classes=10**9",
        lambda w: create_model("resnet8", num_classes=10**9),
        "num_classes",
        "expected an int in [1, 100000]",
    ),
    Row(
        "model.apply of a wrong-shape weight",
        lambda w: w.resnet8()[0].apply(
            *w.resnet8(fc_shape=(3, 3))[1:], np.zeros((1, 3, 8, 8), np.float32), train=False
        ),
        "params['fc.weight']",
        "expected shape (10, 64) (the resnet8 parameter), got shape (3, 3)",
    ),
    Row(
        "model.apply of int32 parameters",
        lambda w: w.resnet8()[0].apply(*w.resnet8(int32=True)[1:], np.zeros((1, 3, 8, 8), np.float32), train=False),
        "params['conv1.weight']",
        "expected a floating dtype, got int32",
    ),
    *[
        Row(
            f"model.init seed={seed!r}",
            lambda w, seed=seed: create_model("resnet8").init(seed),
            "seed",
            f"expected an int ≥ 0, got {seed!r}",
        )
        for seed in (-1, 1.5, "0")
    ],
    Row(
        "save_weights of another model's params",
        lambda w: save_weights(w.folder() / "w.npz", create_model("resnet8"), *create_model("resnet14-s2u1").init(0)),
        "params",
        "expected only the leaves of resnet8",
    ),
    Row(
        "load_weights of a string array",
        lambda w: load_weights(
            w.file("w.npz", lambda p: np.savez(p, **w.weights_with(**{"fc.bias": np.array(["a"] * 10)}))),
            create_model("resnet8"),
        ),
        "{here}/w.npz",
        "key 'fc.bias': expected dtype float32 or float64, got <U1",
    ),
]


def test_the_table_covers_at_least_40_distinct_bad_inputs():
    bad = [row.bad for row in CLI + LIBRARY]
    assert len(set(bad)) == len(bad) >= 40


@pytest.mark.parametrize("row", params(LIBRARY))
def test_library(row, world):
    with pytest.raises(Exception) as info:
        row.call(world)
    message = str(info.value)
    assert type(info.value) is row.error, (type(info.value), message)
    assert "\n" not in message
    assert message.startswith(f"{expected_start(row, world)}: "), message
    for fragment in row.fragment if isinstance(row.fragment, tuple) else (row.fragment,):
        assert placed(fragment, world) in message, message
    if row.exact:  # exact rows have one fragment
        assert message == f"{expected_start(row, world)}: {placed(row.fragment, world)}"
