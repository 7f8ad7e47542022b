"""CIFAR-10/100 in the official "python version" format, plus the authors' input pipeline.

Reading::

    data = load_cifar(resolve_data("path/to/cifar-10-python.tar.gz"))
    data.train_images            # uint8 (N, 3, 32, 32), channel-major R, G, B planes
    data.train_labels            # int64 (N,)

Pipeline, as in the authors' training script (uint8 until the very end)::

    rng = numpy.random.default_rng(seed)
    for x, y in batches(data.train_images, data.train_labels, 128, rng=rng):
        x = normalize(augment(x, rng), *data.stats)     # float32 (B, 3, 32, 32)

One module per concept:

* :mod:`.cifar`: the official archives (``cifar-10-python.tar.gz`` /
  ``cifar-100-python.tar.gz``, a top folder of pickled batches), read in memory or from the
  extracted folder and verified (MD5, every batch's shapes, dtypes and labels);
* :mod:`.download`: where the data is (a given path, the cache), and fetching it, only when
  asked: :func:`download_cifar`, or ``resolve_data(download=True)``;
* :mod:`.pipeline`: stratified subsets, augmentation, normalisation, minibatches.
"""

from .cifar import CIFAR10, CIFAR100, DATASETS, CifarData, CifarSpec, dataset_spec, file_md5, load_cifar
from .download import default_cache_dir, download_cifar, resolve_data
from .pipeline import augment, batches, normalize, stratified_subset

__all__ = [
    "CIFAR10",
    "CIFAR100",
    "DATASETS",
    "CifarData",
    "CifarSpec",
    "augment",
    "batches",
    "dataset_spec",
    "default_cache_dir",
    "download_cifar",
    "file_md5",
    "load_cifar",
    "normalize",
    "resolve_data",
    "stratified_subset",
]
