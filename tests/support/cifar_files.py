"""Tiny CIFAR-10 data sets written in the official "python version" format, for the tests.

The official archive ``cifar-10-python.tar.gz`` holds the folder ``cifar-10-batches-py`` with
``batches.meta``, ``data_batch_1`` .. ``data_batch_5`` and ``test_batch``: Python 2 pickles
(protocol 2) of dicts with bytes keys, the images as uint8 rows of 3072 values (1024 R, then
1024 G, then 1024 B, each plane row-major), the labels as a list of ints. The NumPy arrays in
them are pickled under the module name ``numpy.core``, as in the official files (NumPy 2
names it ``numpy._core``), so the loader must accept what the real files contain.

Everything here is written independently of ``minibasis.data``.
"""

import pickle
import shutil
import tarfile
from pathlib import Path

import numpy as np

FOLDER = "cifar-10-batches-py"
ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def to_rows(images):
    """(N, 3, 32, 32) -> N x 3072 rows as documented: 1024 R, then 1024 G, then 1024 B,
    each plane row-major. Written with explicit planes, independently of the loader."""
    return np.stack([np.concatenate([img[0].ravel(), img[1].ravel(), img[2].ravel()]) for img in images]).astype(
        np.uint8
    )


def dump(obj, path):
    """Pickle as the official files: protocol 2 (Python 2), NumPy under ``numpy.core``."""
    blob = pickle.dumps(obj, protocol=2)  # protocol 2 names globals as text lines
    Path(path).write_bytes(blob.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n"))


def make_batch(rng, n, labels="cyclic", num_classes=10):
    """(images (n, 3, 32, 32) uint8, labels int64, the batch dict) of random pixels.

    labels: ``"cyclic"`` (0, 1, .., 9, 0, 1, ..: balanced when ``n`` is a multiple of 10, so
    stratified subsets work), ``"random"`` (drawn from ``rng`` after the pixels) or a sequence.
    """
    images = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    if isinstance(labels, str) and labels == "cyclic":
        labels = np.arange(n) % num_classes
    elif isinstance(labels, str) and labels == "random":
        labels = rng.integers(0, num_classes, size=n)
    labels = np.asarray(labels, dtype=np.int64)
    assert labels.shape == (n,), labels.shape
    batch = {
        b"batch_label": b"a tiny batch",
        b"labels": [int(v) for v in labels],
        b"data": to_rows(images),
        b"filenames": [b"x.png"] * n,
    }
    return images, labels, batch


def write_cifar10(root, *, train=(("data_batch_1", 40),), test=20, labels="cyclic", seed=0, skip=()):
    """Write ``root/cifar-10-batches-py/``; return (its path, the arrays it holds, in the order
    the loader must give them: ``train_images``, ``train_labels``, ``test_images``, ``test_labels``).

    train: (file name, number of images) of each training batch, in the expected order.
    test: number of test images. labels: see :func:`make_batch`. seed: of the pixels (and of
    random labels), drawn batch by batch in the order given. skip: files to leave out.
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / FOLDER
    folder.mkdir(parents=True)
    dump(
        {b"num_cases_per_batch": 10000, b"label_names": [n.encode() for n in CIFAR10_NAMES], b"num_vis": 3072},
        folder / "batches.meta",
    )
    train_images, train_labels = [], []
    for name, n in train:
        images, batch_labels, batch = make_batch(rng, n, labels)
        dump(batch, folder / name)
        train_images.append(images)
        train_labels.append(batch_labels)
    test_images, test_labels, batch = make_batch(rng, test, labels)
    dump(batch, folder / "test_batch")
    for name in skip:
        (folder / name).unlink()
    expected = {
        "train_images": np.concatenate(train_images),
        "train_labels": np.concatenate(train_labels),
        "test_images": test_images,
        "test_labels": test_labels,
    }
    return folder, expected


def make_tar(folder, path, order=None):
    """Pack ``folder`` as the official archive does: members under the top folder's name
    (in ``order`` if given, else sorted by name); returns ``path``."""
    folder = Path(folder)
    names = order or sorted(p.name for p in folder.iterdir())
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname=folder.name, recursive=False)
        for name in names:
            tar.add(folder / name, arcname=f"{folder.name}/{name}")
    return Path(path)


def write_cifar10_archive(root, *, train_per_class, test_per_class, seed=0):
    """``root/cifar-10-python.tar.gz`` alone (the folder is removed): one training batch of
    ``10 * train_per_class`` images and a test batch of ``10 * test_per_class``, cyclic labels."""
    folder, _ = write_cifar10(
        root, train=(("data_batch_1", 10 * train_per_class),), test=10 * test_per_class, seed=seed
    )
    archive = make_tar(folder, Path(root) / ARCHIVE)
    shutil.rmtree(folder)
    return archive


def write_cifar100_archive(root, *, train_per_class, test_per_class, seed=0):
    """``root/cifar-100-python.tar.gz`` in the official CIFAR-100 layout (a ``meta`` file of
    fine and coarse label names, ``train`` and ``test`` batches with ``fine_labels`` and
    ``coarse_labels``), cyclic fine labels, random pixels."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True)
    dump(
        {
            b"fine_label_names": [f"class{i:03d}".encode() for i in range(100)],
            b"coarse_label_names": [f"super{i}".encode() for i in range(20)],
        },
        folder / "meta",
    )
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        images, labels, _ = make_batch(rng, 100 * per_class, num_classes=100)
        dump(
            {
                b"filenames": [b"f.png"] * len(labels),
                b"batch_label": split.encode(),
                b"fine_labels": [int(v) for v in labels],
                b"coarse_labels": [int(v) // 5 for v in labels],
                b"data": to_rows(images),
            },
            folder / split,
        )
    archive = make_tar(folder, Path(root) / "cifar-100-python.tar.gz")
    shutil.rmtree(folder)
    return archive


def write_hostile_archive(root, name, *, meta=None, batch=None, member=None, labels="cyclic"):
    """``root/name``: the tiny official layout (40 training, 20 test images) changed in one way:
    ``meta``: the ``label_names`` of ``batches.meta``; ``batch``: the bytes of ``data_batch_1``;
    ``member``: ``"symlink"`` / ``"hardlink"`` (``data_batch_1`` as a link to ``test_batch``) or
    ``"huge"`` (a ``data_batch_1`` header declaring 512 MiB, with no data); ``labels``: see
    :func:`make_batch`."""
    work = Path(root) / f"{name}.d"
    folder, _ = write_cifar10(work, labels=labels)
    if meta is not None:
        dump({b"num_cases_per_batch": 10000, b"label_names": meta, b"num_vis": 3072}, folder / "batches.meta")
    if batch is not None:
        (folder / "data_batch_1").write_bytes(batch)
    path = Path(root) / name
    with tarfile.open(path, "w:gz") as tar:
        for file in ("batches.meta", "test_batch", "data_batch_1"):
            arcname = f"{FOLDER}/{file}"
            if file == "data_batch_1" and member in ("symlink", "hardlink"):
                info = tarfile.TarInfo(arcname)
                info.type = tarfile.SYMTYPE if member == "symlink" else tarfile.LNKTYPE
                info.linkname = "test_batch" if member == "symlink" else f"{FOLDER}/test_batch"
                tar.addfile(info)
            elif file == "data_batch_1" and member == "huge":
                info = tarfile.TarInfo(arcname)
                info.size = 512 << 20
                tar.fileobj.write(info.tobuf(tar.format, tar.encoding, tar.errors))  # the header alone
            else:
                tar.add(folder / file, arcname=arcname)
    shutil.rmtree(work)
    return path
