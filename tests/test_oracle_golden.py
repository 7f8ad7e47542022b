"""Golden files (``minibasis golden``, ``write_golden``, ``check_golden``): every zoo spec round-trips
at a small size; a planted bug fails at its module; nothing existing is overwritten."""

import json

import numpy as np
import pytest

from minibasis import cli
from minibasis.models import create_model
from minibasis.models.info import ZOO
from minibasis.oracle import check_golden, read_golden, write_golden
from minibasis.oracle.record import reference_run
from minibasis.tree import flatten, unflatten
from minibasis.weights import from_state_dict


def recomputed(path, dtype=np.float64):
    """minibasis' arrays recomputed from what the file stores (its weights, inputs, labels, λ)."""
    arrays, manifest = read_golden(path)
    model = create_model(manifest["spec"])
    weights = {key[len("weight:") :]: value for key, value in arrays.items() if key.startswith("weight:")}
    params, state = from_state_dict(model, weights)
    cast = lambda tree: unflatten({k: v.astype(dtype) if v.dtype.kind == "f" else v for k, v in flatten(tree).items()})
    outputs, _ = reference_run(
        model, cast(params), cast(state), arrays["x"].astype(dtype), arrays["labels"], manifest["lambda"]
    )
    return outputs, arrays, manifest


def smallest_size(spec):
    """The smallest image each family takes: its total stride (CIFAR-10 4, CIFAR-100 8, ImageNet 32);
    ResNeXt50's head is the authors' fixed 4×4 average pool of the stride-8 map: 32 px."""
    model = create_model(spec)
    return (
        32
        if model.spec.architecture == "resnext"
        else {"cifar10": 8, "cifar100": 8, "imagenet": 32}[model.spec.dataset]
    )


def zoo():
    """Every zoo spec; slow: those of more than 5 M parameters (their weights and gradients make
    a golden file of 0.1 to 0.5 GB)."""
    return [
        pytest.param(spec, marks=[pytest.mark.slow] if create_model(spec).count_params() > 5e6 else [])
        for spec, *_ in ZOO
    ]


@pytest.mark.parametrize("spec", zoo())
def test_every_zoo_spec_round_trips(tmp_path, spec):
    path = write_golden(tmp_path / "g.npz", spec, image_size=smallest_size(spec), seed=1)
    outputs, arrays, manifest = recomputed(path)
    model = create_model(spec)
    assert manifest["spec"] == spec and manifest["dtype"] == "float64" and manifest["batch"] == 2
    assert [k[len("weight:") :] for k in arrays if k.startswith("weight:")] == [
        k for k, *_ in __import__("minibasis").weights.state_dict_layout(model)
    ]
    assert {k[len("grad:") :] for k in arrays if k.startswith("grad:")} == set(model.parameter_names)
    assert manifest["modules"] == [k[len("eval:") :] for k in arrays if k.startswith("eval:")]
    assert ("R" in arrays) == (model.regulariser is not None) and manifest["regulariser"] == model.regulariser
    report = check_golden(path, outputs)
    assert report.passed, report.text()
    assert len(report.checks) == len(manifest["tolerances"]["float64"]) and not report.not_compared
    single = check_golden(path, recomputed(path, np.float32)[0])  # float32 outputs: float32 tolerances
    assert single.passed and "float32 tolerances" in single.title, single.text(every=False)


def test_a_planted_bug_fails_at_its_module_through_a_golden_file(tmp_path):
    path = write_golden(tmp_path / "g.npz", "resnet14-s2u1", image_size=16)
    outputs, _, _ = recomputed(path)
    outputs = dict(outputs)
    outputs["train:layer2.1.basis_bn1"] = outputs["train:layer2.1.basis_bn1"] * (1 + 1e-6)
    report = check_golden(path, outputs)
    assert not report.passed and report.first_divergence == "layer2.1.basis_bn1", report.text(every=False)
    partial = check_golden(path, {"logits_eval": outputs["logits_eval"]})  # what a first port has
    assert partial.passed and len(partial.checks) == 1
    assert any("not compared" in line for line in partial.not_compared)


def test_the_file_is_plain_npz_with_a_json_manifest(tmp_path):
    path = write_golden(tmp_path / "g.npz", "resnet14-s2u1", image_size=16, dtype="float32", seed=3)
    with np.load(path, allow_pickle=False) as f:  # no pickles
        manifest = json.loads(str(f["manifest"]))
        assert f["x"].dtype == np.float32 and f["weight:conv1.weight"].dtype == np.float32
        assert f["logits_eval"].dtype == np.float64 and f["labels"].dtype.kind == "i"
    tolerances = manifest["tolerances"]
    assert set(tolerances["float64"]) == set(tolerances["float32"])
    assert all(t >= 1e-6 for t in tolerances["float32"].values()) and set(tolerances["float64"].values()) == {1e-9}


def test_cli_writes_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "g.npz"
    assert cli.main(["golden", "resnet14-s2u1", "--out", str(out), "--image-size", "16", "--threads", "1"]) == 0
    before = out.read_bytes()
    assert (
        cli.main(["golden", "resnet14-s2u1", "--out", str(out), "--image-size", "16", "--seed", "1", "--threads", "1"])
        == 1
    )
    assert "expected a path with no file (or overwrite=True, --overwrite)" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert (
        cli.main(
            [
                "golden",
                "resnet14-s2u1",
                "--out",
                str(out),
                "--image-size",
                "16",
                "--seed",
                "1",
                "--overwrite",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    assert out.read_bytes() != before
    assert cli.main(["golden", "resnet14-s2u1", "--out", str(tmp_path / "g"), "--threads", "1"]) == 1
    assert (
        cli.main(["golden", "resnet14-s2u1", "--out", str(tmp_path / "h.npz"), "--batch", "1", "--threads", "1"]) == 1
    )
    assert "batch: expected an int ≥ 2, got 1" in capsys.readouterr().err
    assert not (tmp_path / "h.npz").exists() and not list(tmp_path.glob(".*tmp"))


def test_check_golden_names_a_file_that_is_not_one(tmp_path):
    np.savez(tmp_path / "w.npz", a=np.zeros(2))
    with pytest.raises(ValueError, match=r"w\.npz: expected a minibasis golden file \(a 'manifest' entry\)"):
        check_golden(tmp_path / "w.npz", {"logits_eval": np.zeros(2)})
    with pytest.raises(FileNotFoundError, match="none.npz"):
        check_golden(tmp_path / "none.npz", {"logits_eval": np.zeros(2)})


def test_keys_the_file_does_not_have_are_named(tmp_path):
    path = write_golden(tmp_path / "g.npz", "resnet14-s2u1", image_size=16)
    outputs, _, _ = recomputed(path)
    report = check_golden(path, {"logits": outputs["logits_eval"], "logits_eval": outputs["logits_eval"]})
    assert report.passed and "ignored: 1 of your keys are not in the reference ['logits']" in report.text()


def test_outputs_from_an_npz_file(tmp_path):
    """A C++ or CUDA port writes its arrays to an .npz under the golden keys; its path is enough."""
    path = write_golden(tmp_path / "g.npz", "resnet14-s2u1", image_size=16)
    outputs, _, _ = recomputed(path)
    np.savez(tmp_path / "mine.npz", **outputs)
    assert check_golden(path, tmp_path / "mine.npz").passed
    assert check_golden(path, str(tmp_path / "mine.npz")).passed
    with pytest.raises(
        TypeError, match=r"^outputs: expected a non-empty dict of arrays \(or an \.npz\) .*, got an empty dict$"
    ):
        check_golden(path, {})
    with pytest.raises(FileNotFoundError, match="absent.npz: expected an .npz of your outputs"):
        check_golden(path, tmp_path / "absent.npz")
