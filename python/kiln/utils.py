"""Tree utilities with MLX's signatures: trees are nested lists, tuples and dicts; anything else is a leaf."""

from __future__ import annotations

from collections import defaultdict


def _is_namedtuple(x) -> bool:
    return isinstance(x, tuple) and hasattr(x, "_fields")


def tree_map(fn, tree, *rest, is_leaf=None):
    """Apply fn to the leaves of `tree` (and the matching leaves of `rest`), keeping the structure."""
    if is_leaf is not None and is_leaf(tree):
        return fn(tree, *rest)
    if isinstance(tree, (list, tuple)):
        if rest:
            items = [tree_map(fn, child, *[r[i] for r in rest], is_leaf=is_leaf) for i, child in enumerate(tree)]
        else:
            items = [tree_map(fn, child, is_leaf=is_leaf) for child in tree]
        if _is_namedtuple(tree):
            return type(tree)(*items)
        return type(tree)(items) if isinstance(tree, tuple) else items
    if isinstance(tree, dict):
        # Optimizers map over every parameter each step: the one-tree case skips building argument lists.
        if rest:
            return {k: tree_map(fn, child, *[r[k] for r in rest], is_leaf=is_leaf) for k, child in tree.items()}
        return {k: tree_map(fn, child, is_leaf=is_leaf) for k, child in tree.items()}
    return fn(tree, *rest)


def tree_map_with_path(fn, tree, *rest, is_leaf=None, path=None):
    """Like tree_map, but fn receives the dotted path of each leaf first."""
    if is_leaf is not None and is_leaf(tree):
        return fn(path, tree, *rest)
    if isinstance(tree, (list, tuple)):
        items = [
            tree_map_with_path(fn, child, *(r[i] for r in rest), is_leaf=is_leaf,
                               path=f"{path}.{i}" if path else str(i))
            for i, child in enumerate(tree)
        ]
        if _is_namedtuple(tree):
            return type(tree)(*items)
        return type(tree)(items) if isinstance(tree, tuple) else items
    if isinstance(tree, dict):
        return {
            k: tree_map_with_path(fn, child, *(r[k] for r in rest), is_leaf=is_leaf,
                                  path=f"{path}.{k}" if path else str(k))
            for k, child in tree.items()
        }
    return fn(path, tree, *rest)


def tree_flatten(tree, prefix: str = "", is_leaf=None, destination=None):
    """Flatten a Python tree into (dotted path, leaf) pairs, in order (MLX's `tree_flatten`).

    Args:
        tree: The tree (nested lists, tuples and dicts) to flatten.
        prefix (str): A prefix for the keys; its first character is dropped.
        is_leaf (callable, optional): Returns True for objects to keep whole as leaves.
        destination (list or dict, optional): Where the pairs go: a list receives (key, leaf) tuples, a
            dict maps each key to its leaf. Default: a new list.

    Returns:
        The destination, filled.
    """
    if destination is None:
        destination = []
    if not isinstance(destination, (list, dict)):
        raise ValueError("Destination should be either a list or a dictionary or None")
    if is_leaf is not None and is_leaf(tree):
        _store(destination, prefix[1:], tree)
    elif isinstance(tree, (list, tuple)):
        for i, child in enumerate(tree):
            tree_flatten(child, f"{prefix}.{i}", is_leaf, destination)
    elif isinstance(tree, dict):
        for k, child in tree.items():
            tree_flatten(child, f"{prefix}.{k}", is_leaf, destination)
    else:
        _store(destination, prefix[1:], tree)
    return destination


def _store(destination, key: str, leaf) -> None:
    if isinstance(destination, dict):
        destination[key] = leaf
    else:
        destination.append((key, leaf))


def tree_unflatten(tree):
    """Rebuild nested lists/dicts from (dotted path, value) pairs; integer keys make lists."""
    if isinstance(tree, dict):
        tree = list(tree.items())
    if not tree:
        return []
    if len(tree) == 1 and tree[0][0] == "":
        return tree[0][1]
    try:
        int(tree[0][0].split(".", maxsplit=1)[0])
        is_list = True
    except (ValueError, IndexError):
        is_list = False
    children = defaultdict(list)
    for key, value in tree:
        head, _, rest = key.partition(".")
        children[head].append((rest, value))
    if is_list:
        # Missing indices are empty slots (a layer without parameters in a Sequential), as in MLX.
        n = max(int(k) for k in children) + 1
        return [tree_unflatten(children[str(i)]) if str(i) in children else {} for i in range(n)]
    return {k: tree_unflatten(v) for k, v in children.items()}


def tree_reduce(fn, tree, initializer=None, is_leaf=None):
    """Fold fn over the leaves of tree, left to right."""
    acc = initializer
    for _, leaf in tree_flatten(tree, is_leaf=is_leaf):
        acc = leaf if acc is None else fn(acc, leaf)
    return acc


def _is_empty_container(x) -> bool:
    return isinstance(x, (dict, list, tuple)) and len(x) == 0


def tree_merge(tree_a, tree_b, merge_fn=None):
    """Merge two Python trees into one holding the values of both: a deep ``dict.update``.

    Empty containers count as absent subtrees. Where both trees hold a leaf at the same place, ``merge_fn``
    decides (without one that is an error).

    Args:
        tree_a (Any): The first Python tree.
        tree_b (Any): The second Python tree.
        merge_fn (callable, optional): A function of the two leaves returning the merged leaf.

    Returns:
        The Python tree containing the values of both ``tree_a`` and ``tree_b``.
    """
    if _is_empty_container(tree_a) and _is_empty_container(tree_b):
        if type(tree_a) is not type(tree_b):
            raise ValueError(f"Cannot merge {type(tree_a).__name__} with {type(tree_b).__name__}")
        return type(tree_a)()
    a = None if _is_empty_container(tree_a) else tree_a
    b = None if _is_empty_container(tree_b) else tree_b
    if a is None or b is None:
        return b if a is None else a
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        longer = max(len(a), len(b))
        merged = [tree_merge(a[i] if i < len(a) else None, b[i] if i < len(b) else None, merge_fn)
                  for i in range(longer)]
        return type(a)(*merged) if _is_namedtuple(a) else type(a)(merged)
    if isinstance(a, dict) and isinstance(b, dict):
        keys = list(a) + [k for k in b if k not in a]
        return {k: tree_merge(a.get(k), b.get(k), merge_fn) for k in keys}
    if merge_fn is None:
        raise ValueError("Trees contain elements at the same locations but no merge function was provided")
    return merge_fn(a, b)
