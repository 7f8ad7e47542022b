"""Finding CIFAR on this machine, and fetching it only when asked.

:func:`resolve_data` says where to load a dataset from: a path given by the user, else the
cache (``~/.cache/minibasis``), else, only with ``download=True``, a fresh download of the
official archive (:func:`download_cifar`), verified against its published MD5 before it is
moved into place. Nothing here touches the network unless asked.
"""

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

from ..checks import fail
from ..files import atomic_write
from .cifar import dataset_spec, file_md5


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
    except urllib.error.HTTPError as err:  # the server answered: say what it said
        raise ConnectionError(f"could not download {spec.url}: {err}; {_how_to_point(spec)}") from err
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as err:
        raise ConnectionError(f"could not download {spec.url}: no network? ({err}); {_how_to_point(spec)}") from err
    return digest.hexdigest()


def download_cifar(name, cache_dir):
    """Path of the verified official archive ``cache_dir/<cifar-10-python.tar.gz>``.

    Reuses a cached archive whose MD5 is right; otherwise downloads into a temporary file
    in ``cache_dir``, checks the official MD5 and only then moves it into place, so the
    final name never holds a partial or wrong file. Raises ConnectionError when the
    network is unreachable, ValueError when the bytes received are not the official ones.
    """
    spec = dataset_spec(name)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / spec.filename
    if target.is_file() and file_md5(target) == spec.md5:
        return target

    def fetch_verified(out):  # raising here leaves nothing under the final name
        got = _fetch(spec, out)
        if got != spec.md5:
            fail(spec.url, f"MD5 {spec.md5}", f"{got} (a damaged or altered download; nothing was saved)")

    return atomic_write(target, fetch_verified)


def resolve_data(path=None, *, name="cifar10", download=False, cache_dir=None):
    """Path to load ``name`` from: ``path`` if given, else the cache, else (only when
    ``download=True``) a fresh download into the cache. Never touches the network otherwise.

    The cache (``cache_dir``, default :func:`default_cache_dir`) may hold the official
    archive or its extracted folder; with ``download=True`` a cached archive is checked
    against the official MD5 (and fetched again if wrong). Raises FileNotFoundError saying
    how to point at a local copy when nothing is found.
    """
    spec = dataset_spec(name)
    if path is not None:
        path = Path(path).expanduser()
        if not path.exists():
            fail(
                "path",
                "an existing file or folder",
                f"{path} (no such file or folder); {_how_to_point(spec)}",
                FileNotFoundError,
            )
        return path
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if download and not (cache_dir / spec.folder).is_dir():
        return download_cifar(name, cache_dir)  # verifies a cached archive, fetches otherwise
    for candidate in (cache_dir / spec.filename, cache_dir / spec.folder):
        if candidate.exists():
            return candidate
    fail(
        "path",
        f"the {name} data (none given, none in the cache {cache_dir})",
        f"None; {_how_to_point(spec)}",
        FileNotFoundError,
    )
