"""The official CIFAR-10/100 "python version" archives: what identifies them, how to read them.

An archive (``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``) holds one top folder of
pickled batches. :func:`load_cifar` reads it in memory, or reads the extracted folder, and
checks everything it reads: a damaged or foreign file is a one-line error naming the file.
"""

import gzip
import hashlib
import io
import pickle
import posixpath
import re
import stat
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..checks import fail, one_of


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
    classes: int
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
    classes=10,
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
    classes=100,
    mean=(0.507, 0.487, 0.441),
    std=(0.267, 0.256, 0.276),
)
DATASETS = {spec.name: spec for spec in (CIFAR10, CIFAR100)}

IMAGE_SHAPE = (3, 32, 32)
# Bounds on what is read, so that a hostile or mistaken file cannot hang or exhaust the machine:
# the official archives are 163 and 161 MB, their largest member (CIFAR-100's train) 155 MB.
MAX_ARCHIVE_BYTES = 1 << 30
MAX_MEMBER_BYTES = 1 << 28
MAX_UNPACKED_BYTES = 1 << 30
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
    source: dict = None  # {"path", "sha256", "bytes"}: what was read (see load_cifar)

    @property
    def num_classes(self):
        return len(self.label_names)

    @property
    def stats(self):
        """(mean, std) per channel the authors normalised this dataset with."""
        spec = DATASETS[self.name]
        return spec.mean, spec.std


def dataset_spec(name):
    """The :class:`CifarSpec` called ``name`` ('cifar10', 'cifar100')."""
    return DATASETS[one_of("name", name, sorted(DATASETS))]


def file_md5(path):
    """MD5 hex digest of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ------------------------------------------------------------------ pickled batches


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
        ("__builtin__", "bytes"),  # empty bytes in them
        ("builtins", "bytes"),
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _unpickle(blob, where):
    if not blob:
        fail(where, "a pickled CIFAR batch", "an empty file")
    try:
        obj = _CifarUnpickler(io.BytesIO(blob), encoding="bytes").load()
    except pickle.UnpicklingError as err:
        refused = str(err).startswith("refusing to load ")
        fail(
            where,
            "a pickled CIFAR batch (dicts, lists, bytes, NumPy arrays)",
            f"a pickle of {str(err)[len('refusing to load ') :]}, which is not part of one "
            "(refused: loading it could run code)"
            if refused
            else "a damaged pickle",
        )
    except Exception as err:  # any other failure here means a damaged or foreign file
        fail(where, "a pickled CIFAR batch", f"a damaged or foreign file ({type(err).__name__})")
    if not isinstance(obj, dict):
        fail(where, "a pickled dict", type(obj).__name__)
    return obj


def _get(d, key, where):
    """d[key] for a bytes key, also accepting str keys (pickles re-saved from Python 3)."""
    for k in (key, key.decode()):
        if k in d:
            return d[k]
    keys = sorted(k.decode() if isinstance(k, bytes) else str(k) for k in d)
    fail(where, f"a key {key!r}", f"keys {keys}")


def _batch(files, name, spec, where, num_classes):
    """(images uint8 (N, 3, 32, 32), labels int64 (N,)) from one pickled batch."""
    where = f"{where}{name}"
    d = _unpickle(files[name], where)
    data, labels = _get(d, b"data", where), _get(d, spec.labels_key, where)
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == _ROW):
        got = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        fail(where, f"data as an N x {_ROW} uint8 array", got)
    empty = isinstance(labels, (list, tuple)) and not labels
    labels = np.zeros(0, np.int64) if empty else np.asarray(labels)  # (np.asarray([]) is float64)
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer):
        fail(where, f"{len(data)} integer labels (one per image)", f"{labels.dtype} array of shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        fail(where, f"labels in [0, {num_classes})", f"values in [{labels.min()}, {labels.max()}]")
    return data.reshape(-1, *IMAGE_SHAPE), labels.astype(np.int64)


# ------------------------------------------------------------- finding the files


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
            # very end (bounded), so that gzip checks its CRC and notices truncation.
            stream = gzip.GzipFile(fileobj=raw) if gzipped else raw
            with tarfile.open(fileobj=stream, mode="r|" if gzipped else "r|*") as tar:
                for member in tar:  # stops at the end marker
                    folder, name = posixpath.split(member.name)
                    if _is_cifar_file(name) and _member_ok(path, member):
                        groups.setdefault(folder, {})[name] = tar.extractfile(member).read()
            unpacked = 0
            while chunk := stream.read(1 << 20):
                unpacked += len(chunk)
                if unpacked > MAX_UNPACKED_BYTES:
                    fail(
                        path,
                        f"an official {CIFAR10.filename} or {CIFAR100.filename}",
                        f"an archive that unpacks to more than {MAX_UNPACKED_BYTES >> 20} MiB",
                    )
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        fail(
            path,
            f"an official {CIFAR10.filename} or {CIFAR100.filename}",
            f"not a readable tar archive, corrupt or truncated? ({err!r})",
        )
    return groups


def _member_ok(path, member):
    """True for a regular member of a bounded size; a link or a device named like a CIFAR file
    is refused, named (it would otherwise read as a missing file)."""
    where = f"{path}:{member.name}"
    if not member.isfile():
        kind = "a symbolic link" if member.issym() else "a hard link" if member.islnk() else "not a regular file"
        fail(where, "a regular file member", f"{kind}{' to ' + member.linkname if member.linkname else ''}")
    if member.size > MAX_MEMBER_BYTES:
        fail(
            where,
            f"a member of at most {MAX_MEMBER_BYTES >> 20} MiB (an official batch is 31 to 155 MB)",
            f"one that declares {member.size} bytes",
        )
    return True


def _regular(path, what):
    """``path`` if it is a regular file of at most MAX_ARCHIVE_BYTES (a FIFO, a device or a
    socket is refused before it is opened: reading one could hang)."""
    mode = path.stat().st_mode
    if not stat.S_ISREG(mode):
        device = stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a device" if device else "not a regular file"
        fail("path", what, f"{path}, {kind}")
    if path.stat().st_size > MAX_ARCHIVE_BYTES:
        fail("path", f"{what} of at most {MAX_ARCHIVE_BYTES >> 20} MiB", f"{path}, {path.stat().st_size} bytes")
    return path


def _pick(folder):
    """The archive or extracted folder inside ``folder`` (the parent of either)."""
    found = {}
    for spec in DATASETS.values():
        for candidate in (folder / spec.folder, folder / spec.filename):  # extracted first
            if candidate.exists():
                found.setdefault(spec.name, candidate)
    if not found:
        fail(
            "path",
            f"the official archive ({CIFAR10.filename} / {CIFAR100.filename}), its "
            f"extracted folder ({CIFAR10.folder}/ / {CIFAR100.folder}/) or a folder holding one",
            f"{folder}, which holds none of them",
        )
    if len(found) > 1:
        fail(
            "path",
            "a folder holding one dataset (point at one of them)",
            f"{folder}, holding {sorted(map(str, found.values()))}",
        )
    return found.popitem()[1]


def _locate(path):
    """(where, {file name: bytes}, the archive or folder read) of the CIFAR files that ``path``
    points at; ``where`` prefixes a file name to say where it came from in error messages."""
    path = Path(path).expanduser()
    if not path.exists():
        fail("path", "an existing file or folder", f"{path} (no such file or folder)", FileNotFoundError)
    if path.is_dir():
        names = [p.name for p in path.iterdir() if _is_cifar_file(p.name) and p.exists()]
        if not names:
            return _locate(_pick(path))
        return f"{path}/", {n: _regular(path / n, "a regular file of CIFAR batches").read_bytes() for n in names}, path
    groups = _read_tar(_regular(path, "a CIFAR archive (a regular file) or its folder"))
    if len(groups) != 1:
        fail("path", f"one folder of CIFAR batches in the archive {path}", f"{len(groups)}: {sorted(groups)}")
    folder, files = groups.popitem()
    return (f"{path}:{folder}/" if folder else f"{path}:"), files, path


# ------------------------------------------------------------------------ loading


def _check_md5(path, md5):
    """Refuse an archive whose MD5 is not ``md5`` (before anything is read from it)."""
    if not isinstance(md5, str):
        fail("md5", "a hex string", type(md5).__name__, TypeError)
    if not Path(path).expanduser().is_file():
        fail("md5", "None for a folder (only an archive file can be checked)", f"{md5!r} for {path}")
    got = file_md5(Path(path).expanduser())
    if got != md5.lower():
        fail(path, f"MD5 {md5.lower()}", f"{got} (a damaged or different archive)")


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
        _check_md5(path, md5)
    where, files, read = _locate(path)
    source = _identity(read, files)
    specs = {_dataset_of(n).name: _dataset_of(n) for n in files}
    if len(specs) != 1:
        fail(where, "the files of one dataset", sorted(files))
    (spec,) = specs.values()
    if spec.meta_file not in files:
        fail(where, f"the label names file {spec.meta_file!r}", "no such file")
    meta_where = f"{where}{spec.meta_file}"
    names = _get(_unpickle(files[spec.meta_file], meta_where), spec.names_key, meta_where)
    label_names = _label_names(names, spec, meta_where)
    train_names = sorted(
        (n for n in files if re.fullmatch(spec.train_pattern, n)), key=lambda n: _batch_number(n, spec)
    )
    if not train_names:
        fail(where, f"training batches {spec.train_hint!r}", "none")
    if spec.test_file not in files:
        fail(where, f"the test batch {spec.test_file!r}", "no such file")
    train = [_batch(files, n, spec, where, len(label_names)) for n in train_names]
    test_images, test_labels = _batch(files, spec.test_file, spec, where, len(label_names))
    if not sum(len(y) for _, y in train) or not len(test_labels):
        fail(f"{where}{train_names[0] if len(test_labels) else spec.test_file}", "at least one image", "an empty batch")
    return CifarData(
        train_images=np.concatenate([x for x, _ in train]),
        train_labels=np.concatenate([y for _, y in train]),
        test_images=test_images,
        test_labels=test_labels,
        label_names=label_names,
        name=spec.name,
        source=source,
    )


def _label_names(names, spec, where):
    """The ``spec.classes`` class names of the meta file, as text."""
    key = f"{where}['{spec.names_key.decode()}']"
    if not (isinstance(names, (list, tuple)) and all(isinstance(n, (bytes, str)) for n in names)):
        fail(key, f"a list of {spec.classes} class names", f"{type(names).__name__} {_clip(names)}")
    if len(names) != spec.classes:
        fail(key, f"the {spec.classes} class names of {spec.name}", f"{len(names)} names")
    return [n.decode(errors="replace") if isinstance(n, bytes) else n for n in names]


def _clip(value, width=40):
    text = repr(value)
    return text if len(text) <= width else text[:width] + "…"


def _identity(path, files):
    """What a run records of its data: the absolute path, and the SHA-256 and size of the
    archive, or of a manifest of the CIFAR files (name, size, SHA-256) of a folder."""
    path = Path(path).expanduser().absolute()
    if path.is_file():
        digest, size = hashlib.sha256(), path.stat().st_size
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        return {"path": str(path), "sha256": digest.hexdigest(), "bytes": size}
    manifest = "".join(
        f"{name} {len(blob)} {hashlib.sha256(blob).hexdigest()}\n" for name, blob in sorted(files.items())
    )
    return {
        "path": str(path),
        "sha256": hashlib.sha256(manifest.encode()).hexdigest(),
        "bytes": sum(map(len, files.values())),
    }
