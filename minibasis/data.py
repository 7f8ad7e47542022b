"""CIFAR-10/100 in the official "python version" format, plus the authors' input pipeline.

Reading::

    data = load_cifar(resolve_data("path/to/cifar-10-python.tar.gz"))
    data.train_images            # uint8 (N, 3, 32, 32), channel-major R, G, B planes
    data.train_labels            # int64 (N,)

Pipeline, as in the authors' training script (uint8 until the very end)::

    rng = numpy.random.default_rng(seed)
    for x, y in batches(data.train_images, data.train_labels, 128, rng=rng):
        x = normalize(augment(x, rng), *data.stats)     # float32 (B, 3, 32, 32)

The archives are the official ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``
(a top folder of pickled batches), read in memory or from the extracted folder. Nothing is
fetched from the network unless asked: :func:`download_cifar`, or
``resolve_data(download=True)``.
"""

import gzip
import hashlib
import http.client
import io
import os
import pickle
import posixpath
import re
import tarfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .files import atomic_write


@dataclass(frozen=True)
class CifarSpec:
    """What identifies one CIFAR dataset: where it comes from and how it is laid out."""

    name: str  # 'cifar10' / 'cifar100'
    url: str
    md5: str  # of the official .tar.gz
    filename: str  # the official archive's file name
    folder: str  # its top folder
    meta_file: str
    names_key: bytes  # label names in the meta file
    labels_key: bytes  # labels in each batch
    train_pattern: str  # regex of the training batch file names (one group: the number)
    train_hint: str  # the same, for people
    test_file: str
    mean: tuple  # per-channel normalisation used by the authors (R, G, B)
    std: tuple


CIFAR10 = CifarSpec(
    name="cifar10",
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    md5="c58f30108f718f92721af3b95e74349a",
    filename="cifar-10-python.tar.gz",
    folder="cifar-10-batches-py",
    meta_file="batches.meta",
    names_key=b"label_names",
    labels_key=b"labels",
    train_pattern=r"data_batch_(\d+)",
    train_hint="data_batch_1 .. data_batch_5",
    test_file="test_batch",
    mean=(0.485, 0.456, 0.406),  # ImageNet statistics, as in the authors' CIFAR-10 script
    std=(0.229, 0.224, 0.225),
)
CIFAR100 = CifarSpec(
    name="cifar100",
    url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    md5="eb9058c3a382ffc7106e4002c42a8d85",
    filename="cifar-100-python.tar.gz",
    folder="cifar-100-python",
    meta_file="meta",
    names_key=b"fine_label_names",
    labels_key=b"fine_labels",
    train_pattern=r"(train)",
    train_hint="train",
    test_file="test",
    mean=(0.507, 0.487, 0.441),
    std=(0.267, 0.256, 0.276),
)
DATASETS = {spec.name: spec for spec in (CIFAR10, CIFAR100)}

IMAGE_SHAPE = (3, 32, 32)
_ROW = 3 * 32 * 32  # one image as stored: R plane, G plane, B plane, each 32x32 row-major


@dataclass(frozen=True, eq=False)
class CifarData:
    """A loaded CIFAR dataset. Images uint8 (N, 3, 32, 32); labels int64 (N,)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    label_names: list
    name: str

    @property
    def num_classes(self):
        return len(self.label_names)

    @property
    def stats(self):
        """(mean, std) per channel the authors normalised this dataset with."""
        spec = DATASETS[self.name]
        return spec.mean, spec.std


# ---------------------------------------------------------------------------- reading


def _spec(name):
    if name not in DATASETS:
        raise ValueError(f"name: expected one of {sorted(DATASETS)}, received {name!r}")
    return DATASETS[name]


def file_md5(path):
    """MD5 hex digest of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles the official batches (dicts, lists, bytes, NumPy arrays) and nothing else,
    so that opening an archive from elsewhere cannot run arbitrary code."""

    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),  # bytes in protocol-2 pickles written by Python 3
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _unpickle(blob, where):
    try:
        obj = _CifarUnpickler(io.BytesIO(blob), encoding="bytes").load()
    except Exception as err:  # any failure here means a damaged or foreign file
        raise ValueError(f"{where}: not a readable CIFAR pickle ({err!r})") from err
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a pickled dict, received {type(obj).__name__}")
    return obj


def _get(d, key, where):
    """d[key] for a bytes key, also accepting str keys (pickles re-saved from Python 3)."""
    for k in (key, key.decode()):
        if k in d:
            return d[k]
    keys = sorted(k.decode() if isinstance(k, bytes) else str(k) for k in d)
    raise ValueError(f"{where}: expected a key {key!r}, received keys {keys}")


def _dataset_of(name):
    """The spec of the dataset with a file of this name (``batches.meta``, ``train``), or None."""
    for spec in DATASETS.values():
        if name in (spec.meta_file, spec.test_file) or re.fullmatch(spec.train_pattern, name):
            return spec
    return None


def _is_cifar_file(name):
    return _dataset_of(name) is not None


def _batch_number(name, spec):
    """N of ``data_batch_N`` (so that 10 sorts after 9); 0 for CIFAR-100's ``train``."""
    number = re.fullmatch(spec.train_pattern, name).group(1)
    return int(number) if number.isdigit() else 0


def _read_tar(path):
    """{folder inside the archive: {file name: bytes}} for the CIFAR files of a tar archive."""
    groups = {}
    try:
        with open(path, "rb") as raw:
            gzipped = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            # One streaming pass in memory, nothing written to disk. A .tar.gz is read to its
            # very end, so that gzip checks its CRC and notices truncation.
            stream = gzip.GzipFile(fileobj=raw) if gzipped else raw
            with tarfile.open(fileobj=stream, mode="r|" if gzipped else "r|*") as tar:
                for member in tar:
                    folder, name = posixpath.split(member.name)
                    if member.isfile() and _is_cifar_file(name):
                        groups.setdefault(folder, {})[name] = tar.extractfile(member).read()
            while stream.read(1 << 20):
                pass
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise ValueError(
            f"{path}: not a readable tar archive, corrupt or truncated? ({err!r}); "
            f"expected an official {CIFAR10.filename} or {CIFAR100.filename}"
        ) from err
    return groups


def _pick(folder):
    """The archive or extracted folder inside ``folder`` (the parent of either)."""
    found = {}
    for spec in DATASETS.values():
        for candidate in (folder / spec.folder, folder / spec.filename):  # extracted first
            if candidate.exists():
                found.setdefault(spec.name, candidate)
    if not found:
        raise ValueError(
            f"path: no CIFAR data in {folder}: expected the official archive "
            f"({CIFAR10.filename} / {CIFAR100.filename}), its extracted folder "
            f"({CIFAR10.folder}/ / {CIFAR100.folder}/) or a folder holding one"
        )
    if len(found) > 1:
        raise ValueError(f"path: {folder} holds more than one dataset "
                         f"({sorted(map(str, found.values()))}); point at one of them")
    return found.popitem()[1]


def _locate(path):
    """(where, {file name: bytes}) of the CIFAR files that ``path`` points at; ``where``
    prefixes a file name to say where it came from in error messages."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"path: no such file or folder: {path}")
    if path.is_dir():
        names = [p.name for p in path.iterdir() if p.is_file() and _is_cifar_file(p.name)]
        if not names:
            return _locate(_pick(path))
        return f"{path}/", {n: (path / n).read_bytes() for n in names}
    groups = _read_tar(path)
    if len(groups) != 1:
        raise ValueError(f"path: expected one folder of CIFAR batches in the archive {path}, "
                         f"received {len(groups)}: {sorted(groups)}")
    folder, files = groups.popitem()
    return f"{path}:{folder}/" if folder else f"{path}:", files


def _batch(files, name, spec, where, num_classes):
    """(images uint8 (N, 3, 32, 32), labels int64 (N,)) from one pickled batch."""
    where = f"{where}{name}"
    d = _unpickle(files[name], where)
    data, labels = _get(d, b"data", where), _get(d, spec.labels_key, where)
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == _ROW):
        received = (f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray)
                    else type(data).__name__)
        raise ValueError(
            f"{where}: expected data as an N x {_ROW} uint8 array, received {received}"
        )
    labels = np.asarray(labels)
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"{where}: expected {len(data)} integer labels (one per image), "
            f"received {labels.dtype} array of shape {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"{where}: expected labels in [0, {num_classes}), "
            f"received values in [{labels.min()}, {labels.max()}]"
        )
    return data.reshape(-1, *IMAGE_SHAPE), labels.astype(np.int64)


def load_cifar(path, *, md5=None):
    """Load CIFAR-10 or CIFAR-100 in the official python format.

    path: the official ``.tar.gz`` (read in memory), its extracted top folder
        (``cifar-10-batches-py/``, ``cifar-100-python/``), or the folder holding either.
        Which dataset it is comes from the file names inside. Any number of CIFAR-10
        training batches ``data_batch_N`` is accepted, concatenated in numeric order.
    md5: when given, the archive's MD5 must match (checked before reading anything).
    Returns a :class:`CifarData`: images uint8 (N, 3, 32, 32), the stored N x 3072 rows
    reshaped channel-major (R plane, G plane, B plane); labels int64 (N,).
    Raises FileNotFoundError for a missing path, ValueError for anything wrong inside.
    """
    if md5 is not None:
        if not isinstance(md5, str):
            raise TypeError(f"md5: expected a hex string, received {type(md5).__name__}")
        if not Path(path).expanduser().is_file():
            raise ValueError(f"md5: only an archive file can be checked, received {path}")
        received = file_md5(Path(path).expanduser())
        if received != md5.lower():
            raise ValueError(
                f"{path}: MD5 mismatch, expected {md5.lower()}, received {received} "
                "(a damaged or different archive)"
            )
    where, files = _locate(path)
    specs = {_dataset_of(n).name: _dataset_of(n) for n in files}
    if len(specs) != 1:
        raise ValueError(f"{where}: expected the files of one dataset, received {sorted(files)}")
    (spec,) = specs.values()
    meta_where = f"{where}{spec.meta_file}"
    if spec.meta_file not in files:
        raise ValueError(f"{where}: expected the label names file {spec.meta_file!r}, not found")
    label_names = _get(_unpickle(files[spec.meta_file], meta_where), spec.names_key, meta_where)
    label_names = [n.decode() if isinstance(n, bytes) else str(n) for n in label_names]
    train_names = sorted((n for n in files if re.fullmatch(spec.train_pattern, n)),
                         key=lambda n: _batch_number(n, spec))
    if not train_names:
        raise ValueError(f"{where}: expected training batches {spec.train_hint!r}, found none")
    if spec.test_file not in files:
        raise ValueError(f"{where}: expected the test batch {spec.test_file!r}, not found")
    train = [_batch(files, n, spec, where, len(label_names)) for n in train_names]
    test_images, test_labels = _batch(files, spec.test_file, spec, where, len(label_names))
    return CifarData(
        train_images=np.concatenate([x for x, _ in train]),
        train_labels=np.concatenate([y for _, y in train]),
        test_images=test_images,
        test_labels=test_labels,
        label_names=label_names,
        name=spec.name,
    )


# ------------------------------------------------------------------- finding / fetching


def default_cache_dir():
    """``$XDG_CACHE_HOME/minibasis`` (``~/.cache/minibasis`` by default)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "minibasis"


def _how_to_point(spec):
    return (
        f"download {spec.url} elsewhere and point at it with --data PATH "
        f"(the {spec.filename} or its extracted folder {spec.folder}/), "
        "or pass download=True (CLI: --download)"
    )


def _fetch(spec, out):
    """Stream ``spec.url`` into the open file ``out``; returns the MD5 of what came."""
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with urllib.request.urlopen(spec.url, timeout=60) as response:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
    except urllib.error.HTTPError as err:
        raise ConnectionError(
            f"could not download {spec.url}: {err}; {_how_to_point(spec)}"
        ) from err
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as err:
        raise ConnectionError(
            f"could not download {spec.url}: no network? ({err}); {_how_to_point(spec)}"
        ) from err
    return digest.hexdigest()


def download_cifar(name, cache_dir):
    """Path of the verified official archive ``cache_dir/<cifar-10-python.tar.gz>``.

    Reuses a cached archive whose MD5 is right; otherwise downloads into a temporary file
    in ``cache_dir``, checks the official MD5 and only then moves it into place, so the
    final name never holds a partial or wrong file. Raises ConnectionError when the
    network is unreachable, ValueError when the bytes received are not the official ones.
    """
    spec = _spec(name)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / spec.filename
    if target.is_file() and file_md5(target) == spec.md5:
        return target

    def fetch_verified(out):  # raising here leaves nothing under the final name
        received = _fetch(spec, out)
        if received != spec.md5:
            raise ValueError(
                f"{spec.url}: MD5 mismatch, expected {spec.md5}, received {received} "
                "(a damaged or altered download); nothing was saved"
            )

    return atomic_write(target, fetch_verified)


def resolve_data(path=None, *, name="cifar10", download=False, cache_dir=None):
    """Path to load ``name`` from: ``path`` if given, else the cache, else (only when
    ``download=True``) a fresh download into the cache. Never touches the network otherwise.

    The cache (``cache_dir``, default :func:`default_cache_dir`) may hold the official
    archive or its extracted folder; with ``download=True`` a cached archive is checked
    against the official MD5 (and fetched again if wrong). Raises FileNotFoundError saying
    how to point at a local copy when nothing is found.
    """
    spec = _spec(name)
    if path is not None:
        path = Path(path).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"path: no such file or folder: {path}; {_how_to_point(spec)}")
        return path
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if download and not (cache_dir / spec.folder).is_dir():
        return download_cifar(name, cache_dir)  # verifies a cached archive, fetches otherwise
    for candidate in (cache_dir / spec.filename, cache_dir / spec.folder):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(
        f"no {name} data given and none in the cache {cache_dir}: {_how_to_point(spec)}"
    )


# ------------------------------------------------------------------------- pipeline


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_images(images, arg="images"):
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
        received = (f"{images.dtype} array of shape {images.shape}"
                    if isinstance(images, np.ndarray) else type(images).__name__)
        raise TypeError(f"{arg}: expected a uint8 array (N, C, H, W), received {received}")


def stratified_subset(labels, size, *, seed, num_classes=None):
    """Sorted int64 indices of ``size`` images, ``size / num_classes`` from each class.

    labels: integer array (N,) with values in [0, num_classes); ``num_classes`` defaults to
        ``labels.max() + 1``. size: None or N selects everything (``arange(N)``).
    The draw is ``numpy.random.default_rng(seed)``, class by class: the same seed always
    gives the same subset.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(
            f"labels: expected a 1-D integer array, received {labels.dtype} of shape {labels.shape}"
        )
    n = len(labels)
    if size is None or size == n:
        return np.arange(n, dtype=np.int64)
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if n else 0
    if not _is_int(num_classes) or num_classes < 1:
        raise ValueError(f"num_classes: expected a positive int, received {num_classes!r}")
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"labels: expected values in [0, {num_classes}), "
            f"received values in [{labels.min()}, {labels.max()}]"
        )
    if not _is_int(size) or not 1 <= size <= n or size % num_classes:
        raise ValueError(
            f"size: expected None or a positive multiple of num_classes={num_classes} "
            f"no larger than {n}, received {size!r}"
        )
    per_class = size // num_classes
    rng = np.random.default_rng(seed)
    chosen = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        if len(members) < per_class:
            raise ValueError(
                f"size: {size} needs {per_class} images of class {c}, "
                f"but labels hold only {len(members)}"
            )
        chosen.append(rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def normalize(images, mean, std):
    """uint8 (N, C, H, W) -> float32 (N, C, H, W): ``(images / 255 - mean[c]) / std[c]``."""
    _check_images(images)
    mean = np.asarray(mean, dtype=np.float32)
    std = np.asarray(std, dtype=np.float32)
    channels = images.shape[1]
    for arg, value in (("mean", mean), ("std", std)):
        if value.shape != (channels,):
            raise ValueError(
                f"{arg}: expected {channels} values (one per channel), received {value.tolist()}"
            )
    if not np.all(std > 0):
        raise ValueError(f"std: expected positive values, received {std.tolist()}")
    x = images.astype(np.float32) / np.float32(255)
    return (x - mean[:, None, None]) / std[:, None, None]


def augment(images, rng, *, padding=4):
    """The authors' training augmentation on uint8 (N, C, H, W) -> uint8 (N, C, H, W).

    As torchvision's ``RandomCrop(H, padding=4)`` then ``RandomHorizontalFlip()`` on PIL
    images: zero-pad each side by ``padding`` pixels (0 in raw pixel space, i.e. before
    normalisation), crop H x W at offsets drawn independently per image and axis from
    0..2*padding, then mirror left-right with probability 1/2 per image.
    rng: a ``numpy.random.Generator`` (draws: row offsets, column offsets, flips).
    """
    _check_images(images)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: expected a numpy.random.Generator, received {type(rng).__name__}")
    if not _is_int(padding) or padding < 0:
        raise ValueError(f"padding: expected a non-negative int, received {padding!r}")
    n, _, h, w = images.shape
    p = padding
    padded = np.pad(images, ((0, 0), (0, 0), (p, p), (p, p)))
    windows = sliding_window_view(padded, (h, w), axis=(2, 3))  # (N, C, 2p+1, 2p+1, H, W), a view
    top = rng.integers(0, 2 * p + 1, size=n)
    left = rng.integers(0, 2 * p + 1, size=n)
    flip = rng.random(n) < 0.5
    out = windows[np.arange(n), :, top, left]  # (N, C, H, W): image i cropped at (top[i], left[i])
    out[flip] = out[flip][..., ::-1]
    return out


def batches(images, labels, batch_size, *, rng=None):
    """Iterator of (images[i:j], labels[i:j]) minibatches; the last one may be smaller.

    images: (N, ...) array; labels: (N,). In order, or in the order of
    ``rng.permutation(N)`` when a ``numpy.random.Generator`` is given.
    """
    if len(images) != len(labels):
        raise ValueError(
            f"labels: expected {len(images)} labels (one per image), received {len(labels)}"
        )
    if not _is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, received {batch_size!r}")
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng: expected None or a numpy.random.Generator, received {type(rng).__name__}"
        )
    return _batches(images, labels, batch_size, rng)


def _batches(images, labels, batch_size, rng):
    n = len(images)
    order = rng.permutation(n) if rng is not None else None
    for start in range(0, n, batch_size):
        if order is None:
            yield images[start:start + batch_size], labels[start:start + batch_size]
        else:
            idx = order[start:start + batch_size]
            yield images[idx], labels[idx]
