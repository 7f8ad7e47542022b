"""Tests of minibasis.data against tiny archives written here in the official CIFAR format."""

import dataclasses
import hashlib
import io
import os
import pickle
import re
import urllib.error
import urllib.request

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minibasis import data as D
from support.cifar_files import CIFAR10_NAMES, dump, make_tar, to_rows, write_cifar10

# The CIFAR-10 folders here: data_batch_1, _2 and _10 (5, 4 and 3 images: listed in numeric,
# not lexical, order) and 6 test images, random labels; written by cifar_files.


def make_cifar10(root, seed, train=(("data_batch_1", 5), ("data_batch_2", 4), ("data_batch_10", 3)), skip=()):
    """root/cifar-10-batches-py/ and the arrays it holds, in the expected order."""
    return write_cifar10(root, train=train, test=6, labels="random", seed=seed, skip=skip)


# ------------------------------------------------------------------------- helpers


def md5_of(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def check_equal(data, expected):
    for key, value in expected.items():
        got = getattr(data, key)
        assert got.shape == value.shape, key
        np.testing.assert_array_equal(got, value, err_msg=key)


# ------------------------------------------------------------------------- load_cifar


@pytest.fixture
def cifar10(tmp_path):
    folder, expected = make_cifar10(tmp_path / "extracted", seed=0)
    # Members in a scrambled order: batch order must come from the names, not the archive.
    order = ["test_batch", "data_batch_10", "batches.meta", "data_batch_2", "data_batch_1"]
    archive = make_tar(folder, tmp_path / "cifar-10-python.tar.gz", order)
    return folder, archive, expected


@pytest.mark.parametrize("which", ["archive", "folder", "parent"])
def test_load_cifar10_everywhere(cifar10, which):
    folder, archive, expected = cifar10
    path = {"archive": archive, "folder": folder, "parent": folder.parent}[which]
    data = D.load_cifar(path)
    assert data.name == "cifar10"
    assert data.label_names == CIFAR10_NAMES
    assert data.num_classes == 10
    for key in ("train_images", "test_images"):
        assert getattr(data, key).dtype == np.uint8
    for key in ("train_labels", "test_labels"):
        assert getattr(data, key).dtype == np.int64
    assert len(data.train_images) == 5 + 4 + 3  # data_batch_1, _2, _10, in numeric order
    check_equal(data, expected)


def test_load_accepts_path_as_str_and_parent_of_archive(cifar10):
    _, archive, expected = cifar10
    check_equal(D.load_cifar(str(archive)), expected)
    (archive.parent / "extracted").rename(archive.parent / "elsewhere")  # leaves only the archive
    check_equal(D.load_cifar(archive.parent), expected)


def test_rows_are_channel_major_red_plane_first(tmp_path):
    folder, _ = make_cifar10(tmp_path, seed=1, train=(("data_batch_1", 2),))
    row = np.random.default_rng(2).integers(0, 256, size=3072, dtype=np.uint8)
    batch = {b"labels": [3], b"data": row[None, :]}
    dump(batch, folder / "data_batch_1")
    image = D.load_cifar(folder).train_images[0]
    assert image.shape == (3, 32, 32)
    for ch in range(3):  # R, G, B
        for r in range(32):
            for c in range(32):
                assert image[ch, r, c] == row[1024 * ch + 32 * r + c]


def test_md5_checked_before_loading(cifar10):
    _, archive, expected = cifar10
    right = md5_of(archive)
    check_equal(D.load_cifar(archive, md5=right), expected)
    check_equal(D.load_cifar(archive, md5=right.upper()), expected)
    wrong = "0" * 32
    with pytest.raises(ValueError, match="MD5") as err:
        D.load_cifar(archive, md5=wrong)
    message = str(err.value)
    assert wrong in message and right in message and "expected" in message and "got" in message


def test_truncated_or_garbage_archive_is_a_clear_valueerror(cifar10, tmp_path):
    _, archive, _ = cifar10
    blob = archive.read_bytes()
    for cut in (len(blob) // 2, len(blob) - 30, len(blob) - 1, 100):
        truncated = tmp_path / f"cut{cut}.tar.gz"
        truncated.write_bytes(blob[:cut])
        with pytest.raises(ValueError, match="corrupt or truncated") as err:
            D.load_cifar(truncated)
        assert str(truncated) in str(err.value)
    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 0xFF  # inside a stored deflate block: only gzip's CRC can tell
    corrupt = tmp_path / "corrupt.tar.gz"
    corrupt.write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="corrupt or truncated"):
        D.load_cifar(corrupt)
    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(ValueError, match="not a readable tar archive"):
        D.load_cifar(garbage)


@pytest.mark.parametrize("as_archive", [False, True])
@pytest.mark.parametrize(
    "skip, needle",
    [
        (("test_batch",), "test_batch"),
        (("data_batch_1", "data_batch_2", "data_batch_10"), "training batches"),
        (("batches.meta",), "batches.meta"),
    ],
)
def test_missing_files_named_in_error(tmp_path, skip, needle, as_archive):
    folder, _ = make_cifar10(tmp_path / "x", seed=0, skip=skip)
    path = make_tar(folder, tmp_path / "a.tar.gz") if as_archive else folder
    with pytest.raises(ValueError, match=needle) as err:
        D.load_cifar(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    "batch, needle",
    [
        ({b"labels": [1, 2], b"data": np.zeros((2, 3071), np.uint8)}, "3072"),
        ({b"labels": [1, 2], b"data": np.zeros((2, 3072), np.float32)}, "uint8"),
        ({b"labels": [1, 2], b"data": np.zeros(3072 * 2, np.uint8)}, "3072"),
        ({b"labels": [1, 2, 3], b"data": np.zeros((2, 3072), np.uint8)}, "2 integer labels"),
        ({b"labels": [1, 10], b"data": np.zeros((2, 3072), np.uint8)}, r"\[0, 10\)"),
        ({b"data": np.zeros((2, 3072), np.uint8)}, "b'labels'"),
        ([1, 2, 3], "dict"),
    ],
)
def test_bad_batch_contents(tmp_path, batch, needle):
    folder, _ = make_cifar10(tmp_path, seed=0)
    dump(batch, folder / "data_batch_2")
    with pytest.raises(ValueError, match=needle) as err:
        D.load_cifar(folder)
    assert "data_batch_2" in str(err.value)


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_foreign_pickle_code_is_refused_not_run(tmp_path):
    folder, _ = make_cifar10(tmp_path / "x", seed=0)
    target = tmp_path / "pwned"
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": _Evil(str(target))}))
    with pytest.raises(ValueError, match="test_batch"):
        D.load_cifar(folder)
    assert not target.exists()


def test_missing_or_empty_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        D.load_cifar(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="cifar-10-python.tar.gz"):
        D.load_cifar(tmp_path)  # an empty folder
    folder, _ = make_cifar10(tmp_path / "x", seed=0)
    with pytest.raises(ValueError, match="md5"):
        D.load_cifar(folder, md5="0" * 32)


def test_load_cifar100(tmp_path):
    rng = np.random.default_rng(3)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    fine = [f"class{i:03d}" for i in range(100)]
    dump(
        {
            b"fine_label_names": [n.encode() for n in fine],
            b"coarse_label_names": [f"super{i}".encode() for i in range(20)],
        },
        folder / "meta",
    )
    expected = {}
    for split, n in (("train", 7), ("test", 4)):
        images = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 100, size=n)
        dump(
            {
                b"filenames": [b"f.png"] * n,
                b"batch_label": split.encode(),
                b"fine_labels": [int(v) for v in labels],
                b"coarse_labels": [int(v) // 5 for v in labels],
                b"data": to_rows(images),
            },
            folder / split,
        )
        expected[f"{split}_images"], expected[f"{split}_labels"] = images, labels
    archive = make_tar(folder, tmp_path / "cifar-100-python.tar.gz")
    for path in (archive, folder, tmp_path):
        data = D.load_cifar(path)
        assert data.name == "cifar100"
        assert data.label_names == fine
        check_equal(data, expected)
        assert data.stats == ((0.507, 0.487, 0.441), (0.267, 0.256, 0.276))


def test_shared_subset(shared_archive):
    data = D.load_cifar(shared_archive)
    assert data.name == "cifar10"
    assert data.label_names == CIFAR10_NAMES
    assert data.train_images.shape == (10_000, 3, 32, 32)
    assert data.test_images.shape == (10_000, 3, 32, 32)
    assert data.train_images.dtype == data.test_images.dtype == np.uint8
    for labels in (data.train_labels, data.test_labels):
        np.testing.assert_array_equal(np.bincount(labels, minlength=10), [1000] * 10)
    assert data.stats == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    # Real photographs, not noise: neighbouring pixels are strongly correlated.
    x = data.test_images[:200].astype(np.float64)
    assert np.corrcoef(x[..., :-1].ravel(), x[..., 1:].ravel())[0, 1] > 0.8


# ---------------------------------------------------------------- download / resolve


class FakeNet:
    """Stands in for urllib.request.urlopen: serves ``payload`` or raises ``error``."""

    def __init__(self, payload=b"", error=None, fail_after=None, watch=None):
        self.payload, self.error, self.fail_after, self.watch = payload, error, fail_after, watch
        self.urls = []

    def __call__(self, url, timeout=None):
        self.urls.append(url)
        if self.error is not None:
            raise self.error
        fake = self

        class Response(io.BytesIO):
            def read(self, size=-1):
                if fake.watch is not None:  # the final name must not appear mid-download
                    assert not fake.watch.exists()
                if fake.fail_after is not None and self.tell() >= fake.fail_after:
                    raise ConnectionResetError("connection reset by peer")
                return super().read(min(size, 7) if size and size > 0 else size)

        return Response(self.payload)


@pytest.fixture
def official(monkeypatch):
    """Pretend the official CIFAR-10 archive is PAYLOAD (its MD5 is patched to match)."""
    payload = np.random.default_rng(5).bytes(100)
    monkeypatch.setitem(D.DATASETS, "cifar10", dataclasses.replace(D.CIFAR10, md5=hashlib.md5(payload).hexdigest()))
    return payload


def no_network(url, timeout=None):
    raise AssertionError(f"the network was used: {url}")


def test_download_lands_atomically_and_is_reused(tmp_path, monkeypatch, official):
    cache = tmp_path / "cache"
    net = FakeNet(official, watch=cache / "cifar-10-python.tar.gz")
    monkeypatch.setattr(urllib.request, "urlopen", net)
    path = D.download_cifar("cifar10", cache)
    assert path == cache / "cifar-10-python.tar.gz"
    assert path.read_bytes() == official
    assert net.urls == ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
    assert sorted(os.listdir(cache)) == ["cifar-10-python.tar.gz"]  # no temp file left
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    assert D.download_cifar("cifar10", cache) == path  # verified cache hit, no network


def test_download_replaces_a_damaged_cached_file(tmp_path, monkeypatch, official):
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"half a file")
    monkeypatch.setattr(urllib.request, "urlopen", FakeNet(official))
    assert D.download_cifar("cifar10", tmp_path).read_bytes() == official
    assert os.listdir(tmp_path) == ["cifar-10-python.tar.gz"]


def test_download_wrong_bytes_leave_nothing(tmp_path, monkeypatch, official):
    wrong = official[:-1] + b"!"
    monkeypatch.setattr(urllib.request, "urlopen", FakeNet(wrong))
    with pytest.raises(ValueError, match="MD5") as err:
        D.download_cifar("cifar10", tmp_path)
    assert hashlib.md5(wrong).hexdigest() in str(err.value)
    assert D.DATASETS["cifar10"].md5 in str(err.value)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "net",
    [
        FakeNet(error=urllib.error.URLError("[Errno -3] Temporary failure in name resolution")),
        FakeNet(error=TimeoutError("timed out")),
        FakeNet(b"x" * 50, fail_after=21),
    ],
)
def test_download_without_network(tmp_path, monkeypatch, official, net):
    monkeypatch.setattr(urllib.request, "urlopen", net)
    with pytest.raises(ConnectionError, match="no network") as err:
        D.download_cifar("cifar10", tmp_path)
    assert "--data" in str(err.value) and "cifar-10-python.tar.gz" in str(err.value)
    assert os.listdir(tmp_path) == []


def test_download_http_error(tmp_path, monkeypatch, official):
    error = urllib.error.HTTPError(D.CIFAR10.url, 404, "Not Found", {}, None)
    monkeypatch.setattr(urllib.request, "urlopen", FakeNet(error=error))
    with pytest.raises(ConnectionError, match="404"):
        D.download_cifar("cifar10", tmp_path)
    assert os.listdir(tmp_path) == []


def test_download_bad_name(tmp_path):
    with pytest.raises(ValueError, match="name.*cifar10.*'mnist'"):
        D.download_cifar("mnist", tmp_path)


def test_resolve_data_never_uses_the_network_unasked(tmp_path, monkeypatch, official):
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    with pytest.raises(FileNotFoundError) as err:
        D.resolve_data(cache_dir=tmp_path)
    message = str(err.value)
    assert "--data" in message and "download=True" in message and "--download" in message
    with pytest.raises(FileNotFoundError, match="missing"):
        D.resolve_data(tmp_path / "missing")
    given = tmp_path / "mine.tar.gz"
    given.write_bytes(b"")
    assert D.resolve_data(given) == given
    assert D.resolve_data(str(given), download=True) == given  # a given path wins
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    assert D.resolve_data(cache_dir=tmp_path) == folder  # the extracted cache
    assert D.resolve_data(cache_dir=tmp_path, download=True) == folder  # nothing to fetch
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(official)
    assert D.resolve_data(cache_dir=tmp_path) == archive  # the archive first


def test_resolve_data_downloads_when_asked(tmp_path, monkeypatch, official):
    monkeypatch.setattr(urllib.request, "urlopen", FakeNet(official))
    path = D.resolve_data(cache_dir=tmp_path, download=True)
    assert path == tmp_path / "cifar-10-python.tar.gz" and path.read_bytes() == official


# ------------------------------------------------------------------ stratified_subset


@given(counts=st.lists(st.integers(1, 12), min_size=1, max_size=6), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_stratified_subset_balanced(counts, seed, data):
    labels = np.random.default_rng(seed).permutation(np.repeat(np.arange(len(counts)), counts))
    per_class = data.draw(st.integers(1, min(counts)))
    size = per_class * len(counts)
    idx = D.stratified_subset(labels, size, seed=seed)
    assert idx.dtype == np.int64 and len(idx) == size
    assert np.all(np.diff(idx) > 0)  # sorted, no repeats
    np.testing.assert_array_equal(np.bincount(labels[idx], minlength=len(counts)), [per_class] * len(counts))
    np.testing.assert_array_equal(D.stratified_subset(labels, size, seed=seed), idx)


def test_stratified_subset_seeds_and_all():
    labels = np.repeat(np.arange(10), 100)
    a, b = (D.stratified_subset(labels, 50, seed=s) for s in (0, 1))
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(D.stratified_subset(labels, None, seed=0), np.arange(1000))
    np.testing.assert_array_equal(D.stratified_subset(labels, 1000, seed=0), np.arange(1000))
    with pytest.raises(ValueError, match="class 10"):  # classes 10..19 are empty
        D.stratified_subset(labels, 40, seed=0, num_classes=20)


@pytest.mark.parametrize("size", [15, 0, -10, 1010, 20.0, True, "20"])
def test_stratified_subset_bad_size(size):
    labels = np.repeat(np.arange(10), 100)
    with pytest.raises(ValueError, match="size") as err:
        D.stratified_subset(labels, size, seed=0)
    assert repr(size) in str(err.value)


def test_stratified_subset_too_few_in_a_class():
    labels = np.array([0, 0, 0, 1, 1, 1, 2])
    with pytest.raises(ValueError, match="class 2") as err:
        D.stratified_subset(labels, 6, seed=0)
    assert "only 1" in str(err.value)
    with pytest.raises(ValueError, match="class 3"):
        D.stratified_subset(labels, 4, seed=0, num_classes=4)
    with pytest.raises(ValueError, match="labels"):
        D.stratified_subset(labels, 3, seed=0, num_classes=2)
    with pytest.raises(ValueError, match="labels.*integer.*float64"):
        D.stratified_subset(labels.astype(float), 3, seed=0)


# ---------------------------------------------------------------------------- normalize


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 3), h=st.integers(1, 4), w=st.integers(1, 4))
def test_normalize_matches_formula(seed, n, h, w):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 3, h, w), dtype=np.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    out = D.normalize(images, mean, std)
    assert out.dtype == np.float32 and out.shape == images.shape
    for i, c, y, x in np.ndindex(*images.shape):
        want = (int(images[i, c, y, x]) / 255.0 - mean[c]) / std[c]
        assert out[i, c, y, x] == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_normalize_bad_inputs():
    images = np.zeros((2, 3, 4, 4), np.uint8)
    with pytest.raises(ValueError, match="images.*uint8.*float64"):
        D.normalize(images.astype(float), (0, 0, 0), (1, 1, 1))
    with pytest.raises(ValueError, match="images.*4 dimensions.*shape \\(3, 4, 4\\)"):
        D.normalize(images[0], (0, 0, 0), (1, 1, 1))
    with pytest.raises(TypeError, match="images.*numpy.ndarray.*list"):
        D.normalize(images.tolist(), (0, 0, 0), (1, 1, 1))
    with pytest.raises(ValueError, match="mean.*3"):
        D.normalize(images, (0, 0), (1, 1, 1))
    with pytest.raises(ValueError, match="std"):
        D.normalize(images, (0, 0, 0), (1, 0, 1))


# ----------------------------------------------------------------------------- augment


def crops_of(image, pad=4):
    """Every (top, left, flipped) crop of the zero-padded image, built pixel-free of np.pad."""
    c, h, w = image.shape
    padded = np.zeros((c, h + 2 * pad, w + 2 * pad), np.uint8)
    padded[:, pad : pad + h, pad : pad + w] = image
    for top in range(2 * pad + 1):
        for left in range(2 * pad + 1):
            crop = padded[:, top : top + h, left : left + w]
            yield top, left, False, crop
            yield top, left, True, crop[:, :, ::-1]


def match(out, image):
    return [(t, l, f) for t, l, f, crop in crops_of(image) if np.array_equal(out, crop)]


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 6))
def test_augment_is_a_padded_crop_maybe_flipped(seed, n):
    images = np.random.default_rng(seed).integers(1, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    before = images.copy()
    out = D.augment(images, np.random.default_rng(seed))
    assert out.dtype == np.uint8 and out.shape == images.shape
    np.testing.assert_array_equal(images, before)  # input untouched
    for o, image in zip(out, images):
        assert len(match(o, image)) == 1  # nonzero random pixels: exactly one crop fits
    np.testing.assert_array_equal(D.augment(images, np.random.default_rng(seed)), out)


def test_augment_covers_all_offsets_and_flips():
    images = np.random.default_rng(0).integers(1, 256, size=(400, 3, 8, 8), dtype=np.uint8)
    out = D.augment(images, np.random.default_rng(1))
    found = []
    for o, image in zip(out, images):
        (hit,) = [(t, l, f) for t, l, f, crop in crops_of(image) if np.array_equal(o, crop)]
        found.append(hit)
    tops, lefts, flips = map(np.array, zip(*found))
    assert set(tops) == set(lefts) == set(range(9))  # offsets 0..8 on both axes
    assert 0.4 < flips.mean() < 0.6  # p = 1/2
    assert abs(np.corrcoef(tops, lefts)[0, 1]) < 0.2  # independent axes
    assert not np.array_equal(D.augment(images, np.random.default_rng(2)), out)


def test_augment_bad_inputs():
    with pytest.raises(TypeError, match="rng"):
        D.augment(np.zeros((1, 3, 32, 32), np.uint8), 0)
    with pytest.raises(ValueError, match="images.*uint8.*float32"):
        D.augment(np.zeros((1, 3, 32, 32), np.float32), np.random.default_rng(0))
    with pytest.raises(ValueError, match="padding.*-1"):
        D.augment(np.zeros((1, 3, 32, 32), np.uint8), np.random.default_rng(0), padding=-1)
    empty = np.zeros((0, 3, 32, 32), np.uint8)
    assert D.augment(empty, np.random.default_rng(0)).shape == (0, 3, 32, 32)


# ----------------------------------------------------------------------------- batches


@given(n=st.integers(0, 30), batch_size=st.integers(1, 8), seed=st.integers(0, 2**32 - 1))
def test_batches(n, batch_size, seed):
    images = np.arange(n * 2).reshape(n, 2)
    labels = np.arange(n) * 10
    got = list(D.batches(images, labels, batch_size))
    assert [len(x) for x, _ in got] == [min(batch_size, n - i) for i in range(0, n, batch_size)]
    if n:
        np.testing.assert_array_equal(np.concatenate([x for x, _ in got]), images)
        np.testing.assert_array_equal(np.concatenate([y for _, y in got]), labels)
    shuffled = list(D.batches(images, labels, batch_size, rng=np.random.default_rng(seed)))
    assert [len(x) for x, _ in shuffled] == [len(x) for x, _ in got]
    if n:
        order = np.random.default_rng(seed).permutation(n)
        np.testing.assert_array_equal(np.concatenate([y for _, y in shuffled]), labels[order])
        for x, y in shuffled:  # pairs stay together
            np.testing.assert_array_equal(x[:, 0], y // 10 * 2)


def test_batches_bad_inputs():
    with pytest.raises(ValueError, match="labels.*3.*2"):
        D.batches(np.zeros((3, 2)), np.zeros(2), 2)  # raised at the call, not at first next()
    with pytest.raises(ValueError, match="batch_size.*0"):
        D.batches(np.zeros((3, 2)), np.zeros(3), 0)
    with pytest.raises(TypeError, match="rng"):
        D.batches(np.zeros((3, 2)), np.zeros(3), 2, rng=1)


# ------------------------------------------------------------------- one message form


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: D.stratified_subset(np.repeat(np.arange(10), 10), 15, seed=0), "size"),
        (lambda: D.stratified_subset(np.zeros((2, 2), np.int64), 2, seed=0), "labels"),
        (lambda: D.stratified_subset(np.repeat(np.arange(10), 10), 10, seed=0, num_classes=0), "num_classes"),
        (lambda: D.normalize(np.zeros((1, 3, 2, 2), np.uint8), (0, 0, 0), (1, -1, 1)), "std"),
        (lambda: D.augment(np.zeros((1, 3, 2, 2), np.uint8), np.random.default_rng(0), padding=1.5), "padding"),
        (lambda: D.batches(np.zeros((3, 2)), np.zeros(3), 2, rng=np.random.RandomState(0)), "rng"),
        (lambda: D.download_cifar("mnist", "unused"), "name"),
        (lambda: D.load_cifar("/nonexistent/cifar-10-python.tar.gz"), "path"),
    ],
)
def test_errors_name_the_argument_the_expected_and_the_received(call, name):
    with pytest.raises((ValueError, TypeError, FileNotFoundError)) as err:
        call()
    message = str(err.value)
    assert "\n" not in message
    assert re.fullmatch(rf"{name}: expected .+, got .+", message), message


def test_the_source_is_the_archive_read_whichever_way_it_is_named(tmp_path):
    """What a run records of its data: the archive's path, size and SHA-256 (computed
    here with hashlib), the same when the folder holding it is given."""
    folder, _ = write_cifar10(tmp_path / "a")
    archive = make_tar(folder, tmp_path / "a" / "cifar-10-python.tar.gz")
    for file in folder.iterdir():
        file.unlink()
    folder.rmdir()
    expected = {
        "path": str(archive),
        "sha256": hashlib.sha256(archive.read_bytes()).hexdigest(),
        "bytes": archive.stat().st_size,
    }
    assert D.load_cifar(archive).source == expected
    assert D.load_cifar(tmp_path / "a").source == expected


def test_a_folder_source_is_a_manifest_of_its_files(tmp_path):
    folder, _ = write_cifar10(tmp_path / "a")
    manifest = "".join(
        f"{p.name} {p.stat().st_size} {hashlib.sha256(p.read_bytes()).hexdigest()}\n" for p in sorted(folder.iterdir())
    )
    source = D.load_cifar(folder).source
    assert source["sha256"] == hashlib.sha256(manifest.encode()).hexdigest() and source["path"] == str(folder)
    other, _ = write_cifar10(tmp_path / "b", seed=1)
    (folder / "test_batch").write_bytes((other / "test_batch").read_bytes())  # other pixels: another identity
    assert D.load_cifar(folder).source["sha256"] != source["sha256"]


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_non_regular_data_path_is_refused_before_it_is_opened(tmp_path, kind):
    """A device or a FIFO is refused before it is opened: ``--data /dev/zero`` would never end, and
    opening a FIFO blocks."""
    path = tmp_path / "cifar-10-python.tar.gz"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path = "/dev/zero"
    with pytest.raises(
        ValueError,
        match=rf"^path: expected a CIFAR archive \(a regular file\) or its folder, got {path}, "
        rf"{'a FIFO' if kind == 'fifo' else 'a device'}$",
    ):
        D.load_cifar(path)
