"""StageBases: one object per stage owns the shared arrays, hands blocks their views, and
answers which arrays a layer uses; its counts agree with the basis layer's formula."""

import numpy as np
import pytest

from minibasis.basis import basis_layer_params
from minibasis.models import StageBases, create_model
from minibasis.models.info import ZOO
from support.golden import SPECS, golden_file

ZOO_SPECS = [spec for spec, _, _ in ZOO] + ["resnet20-s16u1", "resnet32-single-s8u1", "resnet20-s16u0", "resnet20-s0u1"]
# the specs with two-layer basis blocks (CIFAR ResNets, ResNet34s)
BASIS_SPECS = [spec for spec in ZOO_SPECS if any("coeff_conv1" in mod.name for mod in create_model(spec).modules)]


def test_the_docstrings_use_runs_as_written():
    import doctest

    import minibasis.models.sharing as sharing
    from minibasis.basis import basis_layer

    x = np.random.default_rng(0).standard_normal((2, 16, 8, 8)).astype(np.float32)
    globs = {"create_model": create_model, "basis_layer": basis_layer, "x": x}
    result = doctest.testmod(sharing, globs=globs, raise_on_error=False, verbose=False)
    assert result.attempted >= 8 and result.failed == 0


def test_a_block_sees_the_one_array_under_its_own_name():
    model = create_model("resnet20-s16u1")
    params, _ = model.init(seed=0)
    stage = model.stages["layer1"]
    block = stage.view(params, "layer1.1")
    assert block["shared_basis_1"] is params["shared_basis_1_1"]
    assert block["shared_basis_2"] is params["shared_basis_1_2"]
    assert block["coeff_conv1"] is params["layer1"]["1"]["coeff_conv1"]
    assert stage.view(params, "layer1.0") is params["layer1"]["0"], "the plain first block uses nothing shared"
    assert "shared_basis_1" not in params["layer1"]["1"], "the view adds names; the tree holds each array once"


def test_the_stages_of_double_shared_resnet20():
    stage = create_model("resnet20-s16u1").stages["layer2"]
    assert stage == StageBases(
        "layer2",
        [
            ("shared_basis_1", "shared_basis_2_1", (32, 32, 3, 3)),
            ("shared_basis_2", "shared_basis_2_2", (32, 32, 3, 3)),
        ],
        ["layer2.1", "layer2.2"],
        unique_rows=2,
        init="joint",
    )
    assert (stage.layer_basis(1), stage.layer_basis(2)) == ("shared_basis_1", "shared_basis_2")


def test_which_arrays_a_layer_uses():
    double = create_model("resnet20-s16u1").stages["layer1"]
    assert double.arrays_used("layer1.1", 2) == [
        "layer1.1.basis_conv2.weight",
        "shared_basis_1_2.weight",
        "layer1.1.coeff_conv2.weight",
    ]
    single = create_model("resnet20-single-s16u1").stages["layer3"]
    assert single.arrays_used("layer3.2", 1) == [
        "layer3.2.basis_conv1.weight",
        "shared_basis_3.weight",
        "layer3.2.coeff_conv1.weight",
    ]
    assert single.layer_basis(1) == single.layer_basis(2) == "shared_basis", "one basis for both layers"
    shared_only = create_model("resnet20-s16u0").stages["layer1"]
    assert shared_only.arrays_used("layer1.1", 1) == ["shared_basis_1_1.weight", "layer1.1.coeff_conv1.weight"]
    non_shared = create_model("resnet20-s0u1").stages["layer1"]
    assert non_shared.arrays == () and non_shared.arrays_used("layer1.2", 1) == [
        "layer1.2.basis_conv1.weight",
        "layer1.2.coeff_conv1.weight",
    ]


def test_basis_layer_trees_stack_the_blocks_unique_and_the_stages_shared_basis():
    model = create_model("resnet20-s16u1")
    params, state = model.init(seed=1)
    layer_params, layer_state = model.basis_layer_inputs(params, state, "layer2.2", 2)
    assert layer_params["unique_basis"] is params["layer2"]["2"]["basis_conv2"]["weight"]
    assert layer_params["shared_basis"] is params["shared_basis_2_2"]["weight"]
    assert layer_params["coefficients"] is params["layer2"]["2"]["coeff_conv2"]["weight"]
    assert layer_state["bn"] is state["layer2"]["2"]["bn2"]


@pytest.mark.parametrize("spec", ZOO_SPECS)
def test_every_use_names_its_owner_and_owners_own_the_parameters(spec):
    model = create_model(spec)
    uses = [mod for mod in model.modules if mod.shared]
    # (DenseNet121_SingleShared's shared_basis_4 is the one array no block uses: its stage has no users)
    owners = {owner for bases in model.stages.values() if bases.users for _, owner, _ in bases.arrays}
    used = {model.owner_of(mod.name) for mod in uses}
    assert used == owners, "every shared array with users is used, and only through its stage"
    assert all(mod.count_params() == 0 and mod.parameter_names() == [] for mod in uses)
    shapes = {mod.name: mod.shape for mod in model.modules}
    assert all(mod.shape == shapes[model.owner_of(mod.name)] for mod in uses)


@pytest.mark.parametrize("stem", SPECS, ids=list(SPECS))
def test_owners_are_the_ones_pytorch_lists(stem):
    """The golden files record, for every state_dict key, the first key holding the same tensor
    in the authors' PyTorch model: exactly minibasis' owner of each use."""
    f = golden_file(stem)
    model = create_model(SPECS[stem], int(f["num_classes"]))
    for key, owner in zip(f["keys"].tolist(), f["owners"].tolist()):
        module, leaf = key.rsplit(".", 1)
        assert f"{model.owner_of(module)}.{leaf}" == owner, key


@pytest.mark.parametrize("spec", BASIS_SPECS)
def test_every_basis_layer_counts_what_the_formula_says(spec):
    """Module counting (one Module per authors' module) and basis.basis_layer_params (the
    paper's count of one layer) are two sources for one number."""
    model = create_model(spec)
    counts = {mod.name: mod.count_params() for mod in model.modules}
    shapes = {mod.name: mod.shape for mod in model.modules}
    checked = 0
    for bases in model.stages.values():
        for path in bases.users:
            for layer in (1, 2):
                c_out, rank = shapes[f"{path}.coeff_conv{layer}"][:2]
                c_in = shapes[f"{path}.bn{layer}"][0]  # a basis block keeps its width
                owned = sum(
                    counts.get(f"{path}.{name}{layer}", 0) for name in ("basis_conv", "basis_bn", "coeff_conv", "bn")
                )
                assert rank == bases.unique_rows + bases.basis_rows(layer)
                assert owned == basis_layer_params(c_in, c_out, bases.unique_rows, bases.basis_rows(layer)), (
                    f"{path} layer {layer}"
                )
                checked += 1
    assert checked > 0
