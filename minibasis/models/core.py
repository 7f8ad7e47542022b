"""What every model family shares: its modules in ``state_dict`` order, initialisation,
counting, and the pure ``init``/``apply`` pair.

A family (``cifar_resnet``, ``resnet``, ``mobilenetv2``, ``densenet``, ``resnext``) subclasses :class:`Model` and says
four things: ``stage_bases()``, what each stage shares (:class:`~.sharing.StageBases`);
``build(image_size)``, its modules as the authors' PyTorch class registers them; ``forward``,
the function of the trees; and, when the authors train it with one, its orthogonality
regulariser. Everything else is here, written once.

Sharing lives in :mod:`.sharing`: a shared conv is *one* array in ``params``, under the name of
the module that owns it (``params["shared_basis_1_1"]["weight"]``); :meth:`Model.block` hands a
block its parameters with the stage's shared arrays filled in under the block's names for them,
so a block reads ``params["shared_basis_1"]`` like the authors' ``self.shared_basis_1`` and
autograd sums the gradients of every use into the one array.
"""

from dataclasses import dataclass

import numpy as np

from .. import checks
from ..basis import conv_macs, conv_params, orthogonal, orthogonal_bases
from ..conv import output_size
from ..debug import value
from ..layers import batch_norm_state
from ..tree import flatten, unflatten


@dataclass(frozen=True)
class Module:
    """One PyTorch module of the authors' model, in ``state_dict`` order.

    kind: ``'conv'`` (``shape``: the weight, ``(O, C/groups, kh, kw)``, or ``(1, 1, k)`` for
    the ECA ``Conv1d``), ``'bn'`` (``(C,)``) or ``'linear'`` (``(out, in)``).
    shared: a block's use of an array its stage owns (:class:`~.sharing.StageBases`): listed
    under the block, as PyTorch lists a reused module under every parent, with no parameters
    of its own.
    bias: a conv with a bias (MobileNetV2's first and last conv).
    out_pixels: output positions of this name's uses together, at the size the model was
    built for (0 for a shared array's owner: it is counted at its uses).
    stage: the part of the network it belongs to, for the per-stage tables (``'layer2'``).
    """

    name: str
    kind: str
    shape: tuple
    shared: bool = False
    bias: bool = False
    out_pixels: int = 0
    stage: str = ""
    groups: int = 1  # a conv's groups: its MACs are out_pixels · prod(shape), C_in/groups included

    def parameter_names(self):
        """The ``params`` leaves this module owns (none for a use of a shared array)."""
        if self.shared:
            return []
        if self.kind == "conv":
            return [f"{self.name}.weight"] + ([f"{self.name}.bias"] if self.bias else [])
        return [f"{self.name}.weight", f"{self.name}.bias"]

    def count_params(self):
        """Trainable scalars this module owns: weights (and bias); BN's weight and bias."""
        if self.shared:
            return 0
        if self.kind == "bn":
            return 2 * self.shape[0]
        if self.kind == "linear":
            out, fan_in = self.shape
            return out * fan_in + out
        O, c_per_group, kh, kw = self._conv_dims()
        return conv_params(c_per_group * self.groups, O, kh, kw, self.groups) + (O if self.bias else 0)

    def _conv_dims(self):
        """(O, C/groups, kh, kw) of a conv's weight; the ECA Conv1d's (1, 1, k) as a 1×k kernel."""
        O, c_per_group, *kernel = self.shape
        return (O, c_per_group, 1, kernel[0]) if len(kernel) == 1 else (O, c_per_group, *kernel)

    def count_macs(self):
        """Multiply-accumulates of one image: a conv's out_pixels·O·(C/groups)·kh·kw (the
        formulas of :mod:`minibasis.basis`), a linear layer's in·out; BN, biases: none."""
        if self.kind == "linear":
            out, fan_in = self.shape
            return out * fan_in
        if self.kind != "conv":
            return 0
        O, c_per_group, kh, kw = self._conv_dims()
        return conv_macs(1, self.out_pixels, c_per_group * self.groups, O, kh, kw, self.groups)


class Model:
    """A model of one family and spec: ``init``, ``apply``, ``orthogonality``, the counts.

    Subclasses define ``standard_size`` (the dataset's image size), ``stage_bases()`` (what
    each stage shares, :class:`~.sharing.StageBases`; none by default), ``build(image_size)``,
    ``forward(params, state, x, train, rng)``, ``conv_init`` (``'kaiming_fan_out'`` or
    ``'pytorch_default'``) and, where the authors train with one, ``regulariser`` (their
    function's name) and ``regularise(params)``.
    """

    regulariser = None  # the authors' orthogonality regulariser for this model, by name
    conv_init = "kaiming_fan_out"

    def __init__(self, spec):
        self.spec = spec
        self.stages = {bases.stage: bases for bases in self.stage_bases()}  # stage -> StageBases
        self.modules = self.build(self.standard_size)
        self.parameter_names = [name for mod in self.modules for name in mod.parameter_names()]
        self.state_names = [
            f"{mod.name}.{key}" for mod in self.modules if mod.kind == "bn" for key in batch_norm_state(1)
        ]

    def __repr__(self):
        return f"Model({self.spec.name!r}, num_classes={self.spec.num_classes})"

    # ---- the trees ------------------------------------------------------------------------

    def stage_bases(self):
        """What each stage shares: a list of :class:`~.sharing.StageBases` (none: nothing shared)."""
        return []

    def stage_of(self, path):
        """The StageBases whose arrays block ``path`` uses (None: a block that uses none)."""
        return next((bases for bases in self.stages.values() if path in bases.users), None)

    def block(self, params, path):
        """Block ``path``'s parameters as the block sees them: its sub-tree with its stage's shared
        arrays filled in under its names for them (:meth:`.sharing.StageBases.view`)."""
        bases = self.stage_of(path)
        return bases.view(params, path) if bases else at(params, path)

    def view(self, tree, path):
        """Deprecated (kept for one release): :meth:`block`."""
        return self.block(tree, path)

    def owner_of(self, name):
        """The module that owns what module ``name`` uses: its stage's owner for a use of a
        shared array (``'layer1.1.shared_basis_1'`` -> ``'shared_basis_1_1'``), else ``name``."""
        owners = (bases.owner_of(name) for bases in self.stages.values())
        return next((owner for owner in owners if owner), name)

    def basis_layer_inputs(self, params, state, path, layer):
        """``(params, state)`` of basis layer ``layer`` (1, 2) of the basis block at ``path``, as
        :func:`~minibasis.basis.basis_layer` and ``fold_basis_layer`` take them."""
        return self.stage_of(path).basis_layer_trees(self.block(params, path), at(state, path), layer)

    def init(self, seed, dtype=np.float32):
        """Fresh ``(params, state)`` as the authors' classes initialise them, from ``seed``.

        Convs: Kaiming normal with fan_out (``conv_init = 'kaiming_fan_out'``, the ResNets:
        std = √(2 / (C_out·kh·kw))) or PyTorch's default (MobileNetV2: weight and bias uniform
        ±1/√fan_in, fan_in = C_in/groups·kh·kw); BN weight 1, bias 0, running mean 0, var 1;
        linear PyTorch's default (uniform ±1/√fan_in); then the shared convs the authors
        re-initialise orthogonally (``nn.init.orthogonal_``), jointly where they do so.
        """
        checks.integer("seed", seed, 0)
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):  # what weight files hold (minibasis.weights)
            checks.fail("dtype", "numpy.float32 or numpy.float64", str(dtype))
        rng = np.random.default_rng(seed)
        params, state = {}, {}
        for mod in self.modules:
            if mod.shared:
                continue
            if mod.kind == "bn":
                params[f"{mod.name}.weight"], params[f"{mod.name}.bias"] = (
                    np.ones(mod.shape, dtype),
                    np.zeros(mod.shape, dtype),
                )
                state.update({f"{mod.name}.{k}": v for k, v in batch_norm_state(mod.shape[0], dtype).items()})
            elif mod.kind == "conv" and self.conv_init == "kaiming_fan_out":
                fan_out = mod.shape[0] * int(np.prod(mod.shape[2:]))
                params[f"{mod.name}.weight"] = (rng.standard_normal(mod.shape) * np.sqrt(2.0 / fan_out)).astype(dtype)
            else:  # PyTorch's default for Conv2d, Conv1d and Linear: kaiming_uniform_(a=√5), bias alike
                bound = 1.0 / np.sqrt(np.prod(mod.shape[1:]))
                for name in mod.parameter_names():
                    shape = mod.shape if name.endswith("weight") else mod.shape[:1]
                    params[name] = rng.uniform(-bound, bound, shape).astype(dtype)
        for names in self.orthogonal_groups():
            shape = params[f"{names[0]}.weight"].shape
            for name, basis in zip(
                names,
                orthogonal_bases(rng, len(names), shape, dtype) if len(names) > 1 else [orthogonal(rng, shape, dtype)],
            ):
                params[f"{name}.weight"] = basis
        return unflatten(params), unflatten(state)

    def orthogonal_groups(self):
        """The shared arrays the authors re-initialise orthogonally, each inner list drawn jointly
        (orthogonal to each other too): from each stage's ``init``."""
        groups = []
        for bases in self.stages.values():
            owners = [owner for _, owner, _ in bases.arrays]
            if owners and bases.init == "joint":
                groups.append(owners)
            elif bases.init == "each":
                groups += [[owner] for owner in owners]
        return groups

    # ---- forward ----------------------------------------------------------------------------

    def apply(self, params, state, x, /, *, train, rng=None):
        """Logits of ``x: (N, 3, H, W)``; returns ``(logits: (N, classes), new_state)``.

        train=True: BN normalises with batch statistics and the returned state holds the
        updated running statistics; train=False: BN uses the running statistics.
        rng: a ``numpy.random.Generator`` for dropout's masks in training mode (only the
        MobileNetV2s have a dropout); ``rng=None`` runs training mode with dropout off (how
        the golden outputs of ``../shared/data/golden`` were made).
        """
        checks.boolean("train", train)
        checks.array("x", x, ndim=4)
        if x.shape[1] != 3:
            checks.fail("x", "shape (N, 3, H, W)", f"shape {tuple(x.shape)}")
        self.check_trees(params, state)
        self._check_parameters(params)
        first = self.parameter_names[0]
        weight = at(params, first.rsplit(".", 1)[0])["weight"]
        if weight.dtype != x.dtype:
            checks.fail(
                "x",
                f"dtype {weight.dtype}, that of the model's parameters ({first}); cast the input with "
                f"x.astype(numpy.{weight.dtype}) or make float64 parameters with model.init(seed, dtype=numpy.float64)",
                str(x.dtype),
            )
        return self.forward(params, state, x, train=train, rng=rng)

    def _check_parameters(self, params):
        """Every parameter: the shape of this model's, and one floating dtype, float32 or float64,
        for all (no silent casts): named by its key."""
        dtype = None
        for mod in self.modules:
            for name in mod.parameter_names():
                leaf = at(params, name)
                checks.array(f"params[{name!r}]", leaf, kind="f")
                expected = mod.shape if name.endswith(".weight") else tuple(mod.shape[:1])
                checks.shape(f"params[{name!r}]", leaf, expected, f"(the {self.spec.name} parameter)")
                dtype = dtype or (np.dtype(leaf.dtype), name)
                if leaf.dtype != dtype[0] or dtype[0] not in (np.float32, np.float64):
                    checks.fail(
                        f"params[{name!r}]",
                        f"dtype {dtype[0]} (that of {dtype[1]}; float32 or float64, one for all: no silent casts)",
                        str(leaf.dtype),
                    )

    def check_trees(self, params, state):
        """ValueError naming the first missing or unexpected leaf of ``params`` or ``state``."""
        for tree_name, tree, expected in (
            ("params", value(params), self.parameter_names),
            ("state", state, self.state_names),
        ):
            if not isinstance(tree, dict):  # (value: autograd.grad of a dict traces it as boxes of dicts)
                checks.fail(
                    tree_name, f"a nested dict of arrays (from {self.spec.name}'s init)", type(tree).__name__, TypeError
                )
            names = flatten(tree)
            missing = next((name for name in expected if name not in names), None)
            if missing:
                checks.fail(
                    tree_name,
                    f"the leaves of {self.spec.name}, among them {missing!r}",
                    f"a tree without {missing!r} (another model's?)",
                )
            if len(names) != len(expected):
                known = set(expected)
                extra = next(name for name in names if name not in known)
                checks.fail(
                    tree_name,
                    f"only the leaves of {self.spec.name}",
                    f"an unexpected leaf {extra!r} (another model's?)",
                )

    # ---- the regulariser ----------------------------------------------------------------------

    def orthogonality(self, params):
        """The orthogonality regulariser R the authors train this model with (``regulariser``
        names their function); 0.0 for the models they train with cross-entropy alone."""
        return 0.0 if self.regulariser is None else self.regularise(params)

    def shared_weights(self, params, index=None):
        """Per stage that shares, its shared weights in registration order:
        ``[[shared_basis_g_1, shared_basis_g_2], …]``; ``index`` (1, 2) picks that one only."""
        return [bases.weights(params, index) for bases in self.stages.values() if bases.arrays]

    # ---- counting ------------------------------------------------------------------------------

    def modules_at(self, image_size=None):
        """The modules, their MACs counted for one ``image_size``² image (the dataset's size by default)."""
        return self.modules if image_size is None else self.build(checks.integer("image_size", image_size, 1))

    def accounting(self, image_size=None):
        """Rows ``(name, params, macs)`` per module, for one ``image_size``² image. A shared
        array counts its parameters once (at its owner) and its MACs at every use."""
        return [(mod.name, mod.count_params(), mod.count_macs()) for mod in self.modules_at(image_size)]

    def count_params(self):
        return sum(mod.count_params() for mod in self.modules)

    def count_macs(self, image_size=None):
        return sum(mod.count_macs() for mod in self.modules_at(image_size))


def at(tree, path):
    """The node at dotted ``path`` of a nested dict (``'layer1.1.conv1'``)."""
    for key in path.split("."):
        tree = tree[key]
    return tree


def block_stride(stage, index):
    """The stride of block ``index`` (0-based) of ResNet stage ``stage`` (1-based): the first
    block of every stage but the first halves the map (He et al. 2016)."""
    return 2 if stage > 1 and index == 0 else 1


def conv_module(
    name, weight_shape, in_size, *, stride=1, padding=0, stage="", shared=False, bias=False, groups=1, uses=1
):
    """(a conv Module, its output size) for a square input of ``in_size`` pixels; ``uses``: how
    often the block applies it (a SingleShared basis: in both basis layers)."""
    out = output_size(in_size, weight_shape[-1], stride, padding)
    module = Module(
        name,
        "conv",
        tuple(weight_shape),
        shared=shared,
        bias=bias,
        out_pixels=uses * out * out,
        stage=stage,
        groups=groups,
    )
    return module, out


def bn_module(name, channels, stage=""):
    return Module(name, "bn", (channels,), stage=stage)
