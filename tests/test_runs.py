"""Tests of minibasis.runs: the run folder's files written and read back, every damage to them
reported as one line naming the file (and the entry or line)."""

import json

import numpy as np
import pytest

from minibasis import runs
from minibasis.models import create_model
from minibasis.train import TrainConfig
from minibasis.tree import tree_map
from support.run_files import assert_trees_equal, npz_arrays

CONFIG = TrainConfig(model="resnet14-s2u1", train_size=20, test_size=10, epochs=3, batch_size=10)
RECORDS = [{"epoch": 1, "train_loss": 2.5}, {"epoch": 2, "train_loss": 2.25}]
DATA = {"path": "/data/cifar-10-python.tar.gz", "sha256": "ab" * 32, "bytes": 123}


@pytest.fixture
def checkpoint(tmp_path):
    """(path, model, params, state, momentum, rng) of a saved epoch-2 checkpoint of CONFIG."""
    model = create_model(CONFIG.model)
    params, state = model.init(5)
    momentum = tree_map(lambda v: np.full_like(v, 0.5), params)
    rng = np.random.default_rng(11)
    rng.random(3)
    path = tmp_path / "checkpoint.npz"
    extensions = [{"at_epoch": 1, "from_epochs": 2, "to_epochs": 3}]
    runs.save_checkpoint(path, model, params, state, momentum, 2, rng, CONFIG, extensions, records=RECORDS, data=DATA)
    return path, model, params, state, momentum, rng


def test_checkpoint_round_trip(checkpoint, tmp_path):
    path, model, params, state, momentum, rng = checkpoint
    loaded = runs.load_checkpoint(path, model)
    assert loaded.epoch == 2 and loaded.config == json.loads(json.dumps(CONFIG.__dict__))
    assert loaded.extensions == [{"at_epoch": 1, "from_epochs": 2, "to_epochs": 3}]
    assert loaded.records == RECORDS and loaded.data == DATA and loaded.kernels == "fast"
    assert loaded.rng.bit_generator.state == rng.bit_generator.state
    assert np.array_equal(loaded.rng.random(5), rng.random(5))
    for a, b in ((params, loaded.params), (state, loaded.state), (momentum, loaded.momentum)):
        assert_trees_equal(b, a)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.npz"]
    assert runs.checkpoint_epoch(path) == 2
    assert runs.read_checkpoint_config(path) == loaded.config
    assert runs.describe_last_checkpoint(tmp_path) == f"The last checkpoint, {path}, holds epoch 2."


def resave(path, **changes):
    arrays = npz_arrays(path)
    arrays.update({k: v for k, v in changes.items() if v is not None})
    np.savez(path, **{k: v for k, v in arrays.items() if changes.get(k, 0) is not None})


@pytest.mark.parametrize(
    "changes, where, expected",
    [
        (
            {"epoch": None},
            "",
            "expected a minibasis checkpoint (with 'epoch'), "
            "got an .npz without it (entries: config, data, extensions, format, kernels",
        ),
        ({"epoch": np.int64(4)}, "['epoch']", "expected an integer in [0, 3] (the run's epochs), got 4"),
        ({"epoch": np.float64(1.0)}, "['epoch']", "expected an integer in [0, 3] (the run's epochs), got 1.0"),
        ({"epoch": np.int64(-1)}, "['epoch']", "expected an integer in [0, 3] (the run's epochs), got -1"),
        (
            {"config": np.array("{'model': 1}")},
            "['config']",
            "expected JSON text (Expecting property name enclosed in double quotes at line 1, column 2)",
        ),
        ({"config": np.array("[1, 2]")}, "['config']", "expected a JSON object, got '[1, 2]'"),
        (
            {"config": np.array(json.dumps({"model": "resnet14-s2u1"}))},
            "['config']",
            "expected a configuration with an integer 'epochs' ≥ 1, got None",
        ),
        ({"config": np.arange(3)}, "['config']", "expected a text scalar, got int64 array of shape (3,)"),
        (
            {"rng_state": np.array('{"bit_generator": "MT19937"}')},
            "['rng_state']",
            "expected the JSON state of numpy's PCG64 bit generator",
        ),
        (
            {"rng_state": np.array("12")},
            "['rng_state']",
            "expected the JSON state of numpy's PCG64 bit generator, got '12'",
        ),
        ({"extensions": np.array("{}")}, "['extensions']", "expected a JSON list, got '{}'"),
        ({"log": np.array('[{"epoch": 1}]')}, "['log']", "expected the records of epochs 1–2, got '[{\"epoch\": 1}]'"),
        (
            {"model/fc.weight": np.full((10, 64), np.inf, np.float32)},
            "['model/fc.weight']",
            "expected finite values, got NaN or infinity",
        ),
        (
            {"momentum/fc.weight": np.zeros((3, 3), np.float32)},
            "['momentum/fc.weight']",
            "expected a buffer of shape (10, 64), got (3, 3)",
        ),
        ({"momentum/fc.weight": None}, "['momentum/fc.weight']", "expected a buffer of shape (10, 64), got no entry"),
        (
            {"momentum/fc.extra": np.zeros(2, np.float32)},
            "['momentum/fc.extra']",
            "expected a buffer of shape (none: no such parameter), got (2,)",
        ),
        (
            {"model/fc.bias": None},
            "",
            "expected the weights of a resnet14-s2u1, got state_dict does not fit resnet14-s2u1: missing key 'fc.bias'",
        ),
    ],
)
def test_a_damaged_checkpoint_is_one_line_naming_the_file_and_entry(checkpoint, changes, where, expected):
    path, model, *_ = checkpoint
    resave(path, **changes)
    with pytest.raises(ValueError) as info:
        runs.load_checkpoint(path, model)
    message = str(info.value)
    assert message.startswith(f"{path}{where}: {expected}"), message
    assert "\n" not in message


def test_a_checkpoint_without_momentum_after_an_epoch(checkpoint):
    path, model, *_ = checkpoint
    np.savez(path, **{k: v for k, v in npz_arrays(path).items() if not k.startswith("momentum/")})
    with pytest.raises(
        ValueError, match=r"expected SGD momentum buffers \(momentum/…\) after 2 epochs with momentum 0.9, got none$"
    ):
        runs.load_checkpoint(path, model)


def test_config_and_log_round_trip(tmp_path):
    runs.write_config(tmp_path / "config.json", CONFIG, [{"at_epoch": 3, "from_epochs": 3, "to_epochs": 5}], DATA)
    assert runs.read_config(tmp_path / "config.json") == {
        "format": "minibasis run 2",
        **CONFIG.__dict__,
        "data": DATA,
        "extensions": [{"at_epoch": 3, "from_epochs": 3, "to_epochs": 5}],
    }
    records = [{"epoch": 1, "lr": 0.1}, {"epoch": 2, "lr": 0.01}]
    runs.write_log(tmp_path / "log.jsonl", records)
    assert (tmp_path / "log.jsonl").read_text() == '{"epoch": 1, "lr": 0.1}\n{"epoch": 2, "lr": 0.01}\n'
    assert runs.read_log(tmp_path / "log.jsonl") == records
    (tmp_path / "log.jsonl").write_text('{"epoch": 1}\n\n{"epoch": 2}\n\n')  # blank lines are skipped
    assert runs.read_log(tmp_path / "log.jsonl") == [{"epoch": 1}, {"epoch": 2}]


@pytest.mark.parametrize(
    "text, where, expected",
    [
        (
            '{"epoch": 1}\n{"epoch": 3}\n',
            ", line 2",
            "expected the record of epoch 2 (records count the epochs), got epoch 3",
        ),
        (
            '{"epoch": 1}\n{"epoch": true}\n',
            ", line 2",
            'expected a JSON object with an integer "epoch", got \'{"epoch": true}\'',
        ),
        ("[1]\n", ", line 1", "expected a JSON object with an integer \"epoch\", got '[1]'"),
        ('{"epoch": 1}\n{"epo', ", line 2", "expected a JSON record, got '{\"epo'"),
        (
            b'{"epoch": 1, "x": "\xff"}\n',
            "",
            "expected UTF-8 text, got bytes that are not (invalid start byte at byte 19)",
        ),
    ],
)
def test_a_damaged_log_names_the_file_and_line(tmp_path, text, where, expected):
    path = tmp_path / "log.jsonl"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ValueError) as info:
        runs.read_log(path)
    assert str(info.value) == f"{path}{where}: {expected}"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("model: resnet8\n", "expected JSON text (Expecting value at line 1, column 1), got 'model: resnet8\\n'"),
        ('["resnet8"]', "expected a JSON object, got '[\"resnet8\"]'"),
        ("", "expected JSON text (Expecting value at line 1, column 1), got ''"),
    ],
)
def test_a_damaged_config_names_the_file(tmp_path, text, expected):
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        runs.read_config(path)
    assert str(info.value) == f"{path}: {expected}"


def test_run_files_and_stale_temp_files(tmp_path):
    assert (
        runs.run_files(tmp_path) == [] and runs.describe_last_checkpoint(tmp_path) == "No checkpoint was written yet."
    )
    for name in (
        "log.jsonl",
        ".checkpoint.npz.0000abcd.tmp",
        "weights.npz",
        "notes.txt",
        ".lock",
        ".config.json.12345678.tmp",
    ):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in runs.run_files(tmp_path)] == [
        ".checkpoint.npz.0000abcd.tmp",
        "weights.npz",
        "log.jsonl",
        ".config.json.12345678.tmp",
    ]
    assert [p.name for p in runs.stale_temp_files(tmp_path)] == [
        ".checkpoint.npz.0000abcd.tmp",
        ".config.json.12345678.tmp",
    ]
    (tmp_path / "checkpoint.npz").write_bytes(b"garbage")
    assert runs.describe_last_checkpoint(tmp_path).startswith(
        f"The checkpoint cannot be read ({tmp_path / 'checkpoint.npz'}: expected"
    )
