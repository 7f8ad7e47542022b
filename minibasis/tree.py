"""Parameter trees: nested dicts of arrays, addressed by dotted names.

A model's parameters are a nested dict whose flattened dotted paths are the authors'
PyTorch ``state_dict`` names (``layer1.1.coeff_conv2.weight``). Integer block indices are
plain string keys (``"1"``), exactly as they appear in the dotted name.
"""


def _children(tree):
    """(key, child) pairs of a dict, list or tuple (list items keyed by their index)."""
    return tree.items() if isinstance(tree, dict) else enumerate(tree)


def flatten(tree, prefix=""):
    """Nested dicts (lists, tuples) -> flat ``{dotted_name: leaf}`` in insertion order."""
    flat = {}
    for key, value in _children(tree):
        name = f"{prefix}{key}"
        if isinstance(value, (dict, list, tuple)):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def unflatten(flat):
    """Flat ``{dotted_name: leaf}`` -> nested dict (inverse of :func:`flatten`)."""
    tree = {}
    for name, value in flat.items():
        *path, leaf = name.split(".")
        node = tree
        for key in path:
            node = node.setdefault(key, {})
        node[leaf] = value
    return tree


def tree_map(fn, tree, *others):
    """Apply ``fn`` leaf-wise to ``tree`` and trees of the same structure (dicts, lists, tuples)."""
    if isinstance(tree, dict):
        return {k: tree_map(fn, v, *(o[k] for o in others)) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(tree_map(fn, v, *(o[i] for o in others)) for i, v in enumerate(tree))
    return fn(tree, *others)
