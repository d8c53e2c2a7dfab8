"""export_to_dot: write the lazy graph behind some arrays in Graphviz DOT form (MLX's `mx.export_to_dot`)."""

from __future__ import annotations

from .array import array

__all__ = ["export_to_dot"]


def _label(node) -> str:
    from .graph import type_string

    what = node._prim if node._prim else ("placeholder" if node._placeholder else "array")
    return f"{what}\\n{type_string(node.shape, node.dtype)}"


def export_to_dot(file, *args, **kwargs) -> None:
    """Write the computation graph of the given arrays (positional or named) to `file` (path or stream).

    Args:
        file (str or file): Path or writable stream.
        *args (array): Arrays whose graphs to write.
        **kwargs (array): Named arrays whose graphs to write.

    Returns:
        None
    """
    outputs = [(str(i), a) for i, a in enumerate(args)] + list(kwargs.items())
    for name, a in outputs:
        if not isinstance(a, array):
            raise ValueError(f"[export_to_dot] Expected arrays, got {type(a).__name__} for output {name}.")
    ids, lines, stack = {}, ["digraph {"], [a for _, a in outputs]
    while stack:
        node = stack.pop()
        if id(node) in ids:
            continue
        ids[id(node)] = f"n{len(ids)}"
        stack.extend(node._inputs)
    seen = set()
    stack = [a for _, a in outputs]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        lines.append(f'  {ids[id(node)]} [label="{_label(node)}"];')
        for x in node._inputs:
            lines.append(f"  {ids[id(x)]} -> {ids[id(node)]};")
            stack.append(x)
    for name, a in outputs:
        lines.append(f'  out_{name} [label="{name}", shape=box];')
        lines.append(f"  {ids[id(a)]} -> out_{name};")
    lines.append("}")
    text = "\n".join(lines) + "\n"
    if hasattr(file, "write"):
        file.write(text)
    else:
        with open(file, "w") as f:
            f.write(text)
