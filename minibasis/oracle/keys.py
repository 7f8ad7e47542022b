"""Key maps: minibasis' names (the authors' ``state_dict`` keys) renamed to another side's.

A key map is None (names kept), a dict (keys not in it keep their name; a key mapped to None
is left out) or a function ``key -> new key or None``. A module's name follows its weight's
key: module ``M`` is ``key_map(M + '.weight')`` without ``.weight`` on the other side, or has
no counterpart there when that key is dropped or is not a ``.weight``.
"""

import re

from ..checks import fail


def map_keys(arrays, key_map):
    """``arrays`` (a flat dict) with its keys renamed by ``key_map``: None (unchanged), a dict
    (keys not in it keep their name; a key mapped to None is left out) or a function
    ``key -> new key or None``. Two keys mapped to one name are a ValueError."""
    if key_map is None:
        return dict(arrays)
    rename = renamer(key_map)
    renamed, source = {}, {}
    for key, value in arrays.items():
        new = rename(key)
        if new is None:
            continue
        if new in renamed:
            fail("key_map", "distinct new names", f"{source[new]!r} and {key!r} both renamed {new!r}")
        renamed[new], source[new] = value, key
    return renamed


def renamer(key_map):
    """``key_map`` as a function ``key -> new key or None`` (checking what it returns)."""
    if key_map is None:
        return lambda key: key
    if isinstance(key_map, dict):
        rename = lambda key: key_map.get(key, key)
    elif callable(key_map):
        rename = key_map
    else:
        fail("key_map", "None, a dict or a function", type(key_map).__name__, TypeError)

    def checked(key):
        new = rename(key)
        if new is not None and not isinstance(new, str):
            fail("key_map", f"a str or None for {key!r}", repr(new), TypeError)
        return new

    return checked


def module_renamer(key_map):
    """``module name -> the other side's module name or None``, from a key map of weights."""
    rename = renamer(key_map)

    def module(name):
        new = rename(f"{name}.weight")
        return new[: -len(".weight")] if new is not None and new.endswith(".weight") else None

    return module


_OWNER = re.compile(r"(shared_basis_\d+(?:_\d+)?)\.weight")  # a model-level shared conv's weight


def shared_bases_as_parameters(key):
    """Key map to a PyTorch model whose shared convs are top-level ``nn.Parameter``s, for the
    whole zoo: the owner ``shared_basis_1_1.weight`` (``shared_basis_2.weight`` …) →
    ``shared_basis_1_1``; a block's copy (``layer1.1.shared_basis_1.weight``,
    ``layer3.2.shared_basis.weight``, ``stage4.1.shared_basis1.weight``) → None (that model
    has none); every other key kept."""
    owner = _OWNER.fullmatch(key)
    if owner:
        return owner.group(1)
    return None if re.fullmatch(r".+\.shared_basis[_\d]*\.weight", key) else key
