"""A stage's shared arrays, held once and used by many blocks: the paper's shared basis.

Kim & Kang (Sec. 3): in stage g, basis layer i of block b computes its k×k convolution as

    W_{b,i} = A_{b,i} · [U_{b,i}; S_{g,i}]        (coefficients · [unique filters; shared basis])

with its own coefficients ``A`` and unique filters ``U``, and ``S_{g,i}``, ONE array of the stage
that every block uses. The ImageNet models share whole convolutions the same way
(``W_{b,i} = S_{g,i}``). :class:`StageBases` is that ``S``: it owns a stage's shared arrays (under
the authors' names, ``shared_basis_1_1``), hands each block its view of them (under the block's
own name, ``shared_basis_1``, as the authors' blocks hold ``self.shared_basis_1``), gives a basis
layer its stacked ``[U; S]`` inputs, and answers which arrays a layer uses. As equinox's
``nn.Shared``, tying is a lookup when the model is applied, nothing more; the whole mechanism is::

    def view(self, params, path):
        block = at(params, path)
        if path not in self.users:
            return block
        return {**block, **{local: at(params, owner) for local, owner, _ in self.arrays}}

A 10-line use (``resnet20-s16u1``'s first stage; ``tests/models/test_sharing.py`` runs it)::

    >>> model = create_model("resnet20-s16u1"); params, state = model.init(seed=0)
    >>> stage = model.stages["layer1"]
    >>> [(local, owner) for local, owner, _ in stage.arrays], stage.users
    ([('shared_basis_1', 'shared_basis_1_1'), ('shared_basis_2', 'shared_basis_1_2')], ('layer1.1', 'layer1.2'))
    >>> block = stage.view(params, "layer1.1")
    >>> block["shared_basis_1"] is params["shared_basis_1_1"]       # the same array, not a copy
    True
    >>> layer_params, layer_state = stage.basis_layer_trees(block, state["layer1"]["1"], 1)
    >>> y, new = basis_layer(x, layer_params, layer_state, train=True)   # BN(A ∗ BN([U; S] ∗ x))
    >>> stage.arrays_used("layer1.1", 1)
    ['layer1.1.basis_conv1.weight', 'shared_basis_1_1.weight', 'layer1.1.coeff_conv1.weight']

autograd adds the gradient of every use into the one array, as PyTorch does for a module reused
by several parents; the ``state_dict`` lists the array under its owner and again under every user
(:mod:`minibasis.weights`).
"""

from dataclasses import dataclass

from .core import Module, at, conv_module


@dataclass(frozen=True)
class StageBases:
    """The arrays stage ``stage`` shares among the blocks ``users``.

    arrays: ``((local, owner, weight shape), …)`` in the authors' registration order: the block's
    name for the array (``shared_basis_1``), the model's (``shared_basis_1_1``), its shape. The
    owner is the array's first ``state_dict`` key, the name PyTorch's ``named_parameters`` gives
    it: a module of the model registered before the stage's blocks, or, in DenseNet121_SingleShared,
    whose ``features`` come first, the first dense layer's ``shared_basis``.
    users: the dotted paths of the blocks that use every array (``('layer1.1', 'layer1.2')``); not
    the owner's own block. A block belongs to the stage whose bases it uses (the authors' last
    dense block uses the third one's basis), which may hold an array that no block uses.
    A stage of basis blocks with nothing shared (NonShared) has ``arrays=()``.
    unique_rows: the unique filters ``U`` of each of the users' basis layers (0: none, or no basis layers).
    init: how the authors re-initialise the arrays: ``'joint'`` (orthogonally, orthogonal to each
    other too), ``'each'`` (orthogonally, one at a time) or ``None`` (the layer's default init).
    aliases: names the model registers the arrays under again, one per array, after the blocks
    (DenseNet121_SingleShared's attributes ``shared_basis_g``): listed in the ``state_dict``,
    nothing applied under them.
    """

    stage: str
    arrays: tuple = ()
    users: tuple = ()
    unique_rows: int = 0
    init: str = None
    aliases: tuple = ()

    def __post_init__(self):  # accept lists, keep the object hashable
        object.__setattr__(self, "arrays", tuple((local, owner, tuple(shape)) for local, owner, shape in self.arrays))
        object.__setattr__(self, "users", tuple(self.users))
        object.__setattr__(self, "aliases", tuple(self.aliases))

    # ---- what the stage holds, and who uses it -------------------------------------------------

    def owner_modules(self):
        """The modules that own the arrays (registered at the stage, before its blocks): their
        parameters; their MACs are counted at every use."""
        return [Module(owner, "conv", shape, stage=self.stage) for _, owner, shape in self.arrays]

    def alias_modules(self):
        """The modules of :attr:`aliases`: no parameters (their owners hold them), no MACs."""
        shapes = [shape for _, _, shape in self.arrays]
        return [Module(name, "conv", shape, shared=True, stage=self.stage) for name, shape in zip(self.aliases, shapes)]

    def local_names(self, path):
        """The block's names for the arrays it uses (none if it is not a user)."""
        return [local for local, _, _ in self.arrays] if path in self.users else []

    def use(self, path, local, in_size, *, uses=1, stage=None, **conv):
        """The Module of block ``path``'s use of array ``local`` (no parameters of its own; its
        MACs, ``uses`` times, are this use's) and the output size: ``(Module, size)``. ``stage``:
        the part of the network it is counted in, if not this stage."""
        shape = next(shape for name, _, shape in self.arrays if name == local)
        return conv_module(f"{path}.{local}", shape, in_size, stage=stage or self.stage, shared=True, uses=uses, **conv)

    def owner_of(self, name):
        """``'layer1.1.shared_basis_1'`` -> ``'shared_basis_1_1'`` (an alias, too, names its owner);
        None if ``name`` is not a use."""
        if name in self.aliases:
            return self.arrays[self.aliases.index(name)][1]
        path, _, local = name.rpartition(".")
        if path in self.users:
            return next((owner for name_, owner, _ in self.arrays if name_ == local), None)
        return None

    # ---- applying it ------------------------------------------------------------------------------

    def view(self, params, path):
        """Block ``path``'s sub-tree with the shared arrays filled in under its names for them
        (the same arrays, not copies): what the block sees, like the authors' ``self.shared_basis_1``."""
        block = at(params, path)
        if path not in self.users:
            return block
        return {**block, **{local: at(params, owner) for local, owner, _ in self.arrays}}

    def weights(self, params, index=None):
        """The stage's shared weights in registration order; ``index`` (1, 2): only that one."""
        weights = [at(params, owner)["weight"] for _, owner, _ in self.arrays]
        return weights if index is None else weights[index - 1 : index]

    # ---- basis layers (Kim & Kang, Sec. 3, Fig. 2) -------------------------------------------------

    def layer_basis(self, layer):
        """The block's name for the shared basis that basis layer ``layer`` (1, 2) uses:
        ``shared_basis_{layer}`` (two bases per stage, DoubleShared and CIFAR-10 SharedOnly),
        ``shared_basis`` (one basis for both layers), or None (NonShared)."""
        names = [local for local, _, _ in self.arrays]
        return next((name for name in (f"shared_basis_{layer}", "shared_basis") if name in names), None)

    def basis_rows(self, layer):
        """Shared filters in basis layer ``layer``: s (0 without a shared basis)."""
        local = self.layer_basis(layer)
        return next((shape[0] for name, _, shape in self.arrays if name == local), 0)

    def basis_layer_trees(self, block, block_state, layer):
        """A basis block's trees (``block`` from :meth:`view`, named as the authors' attributes)
        -> :func:`~minibasis.basis.basis_layer`'s ``(params, state)`` for ``layer`` 1 or 2: the
        unique basis ``basis_conv{layer}`` (or None), the shared basis (or None), ``basis_bn``,
        the coefficients ``coeff_conv{layer}`` and ``bn``."""
        unique, local = block.get(f"basis_conv{layer}"), self.layer_basis(layer)
        layer_params = {
            "unique_basis": unique["weight"] if unique else None,
            "shared_basis": block[local]["weight"] if local else None,
            "basis_bn": block[f"basis_bn{layer}"],
            "coefficients": block[f"coeff_conv{layer}"]["weight"],
            "bn": block[f"bn{layer}"],
        }
        return layer_params, {"basis_bn": block_state[f"basis_bn{layer}"], "bn": block_state[f"bn{layer}"]}

    def arrays_used(self, path, layer):
        """The dotted names of the weights basis layer ``layer`` of block ``path`` multiplies with,
        in the order it applies them: ``[U; S]`` (a shared one under its owner's name), then ``A``."""
        local = self.layer_basis(layer) if path in self.users else None
        unique = [f"{path}.basis_conv{layer}.weight"] if self.unique_rows else []
        shared = [f"{self.owner_of(f'{path}.{local}')}.weight"] if local else []
        return unique + shared + [f"{path}.coeff_conv{layer}.weight"]

    def unique_weights(self, params):
        """The unique bases of the stage's users, block by block, layer 1 then 2 (the rows the
        CIFAR-10 regulariser adds to the shared ones)."""
        if not self.unique_rows:
            return []
        return [at(params, path)[f"basis_conv{layer}"]["weight"] for path in self.users for layer in (1, 2)]
