"""Reverse and forward mode autodiff over the lazy node graph: vjp, jvp, grad, value_and_grad,
custom_function and checkpoint.

Each transform copies its differentiable inputs (a `copy` node marks where the sweep stops), runs the
function under `transform_scope` (so evaluated nodes keep their edges), then sweeps the recorded nodes
with the registry's rules. Rules build ordinary nodes, so every transform composes with every other
and with compile's tracing.
"""

from __future__ import annotations

import functools

from .array import array, bind, postorder, transform_scope
from ..utils import tree_map
from .primitives import OTHER, REGISTRY, Primitive, register

__all__ = ["vjp", "jvp", "grad", "value_and_grad", "custom_function", "checkpoint"]


# -- graph sweeps ----------------------------------------------------------------------------------
def _depending_nodes(outputs, targets: set) -> list:
    """Nodes between targets and outputs that depend on a target, inputs before users."""
    depends, order = set(), []
    for node in postorder(outputs, expand=lambda node: id(node) not in targets):
        if id(node) in targets or not depends.isdisjoint(map(id, node._inputs)):
            depends.add(id(node))
            order.append(node)
    return order


def _add(a, b):
    return b if a is None else a + b


def backward(outputs: list, cotangents: list, targets: list) -> list:
    """Cotangents of `targets` given cotangents of `outputs` (None where there is no dependence)."""
    target_ids = {id(t) for t in targets}
    order = _depending_nodes(outputs, target_ids)
    depends = {id(n) for n in order}
    ct = {}
    for o, c in zip(outputs, cotangents):
        if id(o) in depends:
            ct[id(o)] = _add(ct.get(id(o)), c)
    for node in reversed(order):
        if id(node) in target_ids or id(node) not in ct:
            continue
        prim = REGISTRY[node._prim]
        if not prim.differentiable:
            continue
        if prim.vjp is None:
            raise ValueError(f"[vjp] Primitive {node._prim} has no vjp rule.")
        g = ct.pop(id(node))
        input_cts = prim.vjp(g, node, node._inputs, node._params)
        for x, c in zip(node._inputs, input_cts):
            if c is not None and id(x) in depends:
                if tuple(c.shape) != tuple(x.shape):
                    raise RuntimeError(f"[vjp] internal: {node._prim} rule gave shape {c.shape} for {x.shape}")
                if c.dtype != x.dtype:
                    c = c.astype(x.dtype)
                ct[id(x)] = _add(ct.get(id(x)), c)
    return [ct.get(id(t)) for t in targets]


def forward(outputs: list, targets: list, tangents: list) -> list:
    """Tangents of `outputs` given tangents of `targets` (None where there is no dependence)."""
    target_ids = {id(t) for t in targets}
    tan = {id(t): v for t, v in zip(targets, tangents)}
    for node in _depending_nodes(outputs, target_ids):
        if id(node) in target_ids:
            continue
        prim = REGISTRY[node._prim]
        ins = [tan.get(id(x)) for x in node._inputs]
        if not prim.differentiable or all(t is None for t in ins):
            continue  # e.g. downstream of a non-differentiable node: a zero tangent
        if prim.jvp is None:
            raise ValueError(f"[jvp] Primitive {node._prim} has no jvp rule.")
        t = prim.jvp(ins, node, node._inputs, node._params)
        if t is not None:
            if t.dtype != node.dtype:
                t = t.astype(node.dtype)
            tan[id(node)] = t
    return [tan.get(id(o)) for o in outputs]


# -- public transforms ---------------------------------------------------------------------------
def _as_list(out, op):
    if isinstance(out, array):
        return [out], True
    if isinstance(out, (list, tuple)) and all(isinstance(o, array) for o in out):
        return list(out), False
    raise ValueError(f"[{op}] The function must return an array or a list/tuple of arrays.")


def _zeros(x):
    from . import ops

    return ops.zeros_like(x)


def vjp(fun, primals, cotangents):
    """Vector-Jacobian product. Returns (outputs, vjps), both lists.

    Args:
        fun: a function of arrays returning an array or a list of arrays.
        primals: the inputs, a list of arrays.
        cotangents: one array per output, shaped like it.

    Returns:
        tuple(list(array), list(array)): The outputs and the vector-Jacobian products.
    """
    primals = [_check_array(p, "vjp") for p in primals]
    with transform_scope():
        inputs = [bind("copy", p) for p in primals]
        outs, _ = _as_list(fun(*[bind("copy", x) for x in inputs]), "vjp")
        cotangents = [_check_array(c, "vjp") for c in cotangents]
        if len(cotangents) != len(outs):
            raise ValueError(f"[vjp] Expected {len(outs)} cotangents, got {len(cotangents)}.")
        for o, c in zip(outs, cotangents):
            if tuple(o.shape) != tuple(c.shape):
                raise ValueError(f"[vjp] Output shape {tuple(o.shape)} does not match cotangent shape "
                                 f"{tuple(c.shape)}.")
        cts = backward(outs, cotangents, inputs)
    return outs, [c if c is not None else _zeros(p) for c, p in zip(cts, primals)]


def jvp(fun, primals, tangents):
    """Jacobian-vector product. Returns (outputs, jvps), both lists.

    Args:
        fun (Callable): A function of arrays returning an array or a list of arrays.
        primals (list(array)): The point to differentiate at.
        tangents (list(array)): One tangent per primal.

    Returns:
        tuple(list(array), list(array)): The outputs and their Jacobian-vector products.
    """
    primals = [_check_array(p, "jvp") for p in primals]
    tangents = [_check_array(t, "jvp") for t in tangents]
    if len(tangents) != len(primals):
        raise ValueError(f"[jvp] Expected {len(primals)} tangents, got {len(tangents)}.")
    for p, t in zip(primals, tangents):
        if tuple(p.shape) != tuple(t.shape):
            raise ValueError(f"[jvp] Primal shape {tuple(p.shape)} does not match tangent shape {tuple(t.shape)}.")
    with transform_scope():
        inputs = [bind("copy", p) for p in primals]
        outs, _ = _as_list(fun(*[bind("copy", x) for x in inputs]), "jvp")
        tans = forward(outs, inputs, tangents)
    return outs, [t if t is not None else _zeros(o) for t, o in zip(tans, outs)]


def _check_array(x, op):
    if isinstance(x, array):
        return x
    from .ops import to_array

    try:
        return to_array(x)
    except (TypeError, ValueError):
        raise ValueError(f"[{op}] Expected arrays, got {type(x).__name__}.") from None


def _normalize_argnums(argnums, argnames, op):
    if isinstance(argnames, str):
        argnames = [argnames]
    argnames = list(argnames)
    if argnums is None:
        argnums = [] if argnames else 0
    nums = [argnums] if isinstance(argnums, int) else argnums
    if not isinstance(nums, (list, tuple)) or not all(isinstance(n, int) for n in nums):
        raise TypeError(f"[{op}] argnums must be an int or a sequence of ints, got {argnums!r}.")
    nums = list(nums)
    if not nums and not argnames:
        raise ValueError(f"[{op}] Gradient wrt no argument requested.")
    for i, n in enumerate(nums):
        if n < 0:
            raise ValueError(f"[grad] Can't compute the gradient of negative argument index {n}.")
        if n in nums[:i]:
            raise ValueError(f"[grad] Duplicate argument index {n} is not allowed.")
    # As MLX, one argnum (even given as a one-element sequence) gives its gradient unwrapped.
    return nums, len(nums) == 1, argnames


def value_and_grad(fun, argnums=None, argnames=()):
    """Returns a function computing (value of fun, gradient of its scalar output).

    Args:
        fun: returns a scalar array, or a tuple/list whose first element is the scalar loss.
        argnums: positional arguments to differentiate (int or sequence, default 0).
        argnames: keyword arguments to differentiate.

    Returns:
        Callable: A function returning ``(value, gradients)``.
    """
    return _value_and_grad(fun, argnums, argnames, "value_and_grad")


def _value_and_grad(fun, argnums, argnames, op):
    """value_and_grad, or grad's (op "grad": fun must return one scalar array, no auxiliary values)."""
    nums, single, names = _normalize_argnums(argnums, argnames, op)

    @functools.wraps(fun)
    def wrapped(*args, **kwargs):
        for n in nums:
            if not -len(args) <= n < len(args):
                raise ValueError(f"[grad] Can't compute the gradient of argument index {n} because the function "
                                 f"is called with only {len(args)} positional arguments.")
        for k in names:
            if k not in kwargs:
                raise ValueError(f"[grad] Can't compute the gradient of keyword argument '{k}' because the "
                                 "function is not called with it.")
        args, kwargs = list(args), dict(kwargs)
        with transform_scope():
            targets, user_copies = [], []

            def mark(x):
                # The sweep stops at `target`; the function gets its own copy, so that an in-place update
                # of an argument (x[0] = 1) rebinds the copy and leaves the target where it was.
                if not isinstance(x, array):
                    raise ValueError("[tree_flatten] The argument should contain only arrays")
                target = bind("copy", x)
                targets.append(target)
                user = bind("copy", target)
                user_copies.append(user)
                return user

            swapped = []
            for n in nums:
                args[n] = _swap_in(args[n], mark, swapped)
            for k in names:
                kwargs[k] = _swap_in(kwargs[k], mark, swapped)
            # Structural copies: the gradient keeps the arguments' structure even when the function mutates
            # the containers it receives (appends to a list, sets a dict key), as MLX's does.
            marked_pos = [tree_map(_same, args[n]) for n in nums]
            marked_kw = {k: tree_map(_same, kwargs[k]) for k in names}
            try:
                out = fun(*args, **kwargs)
            finally:
                _swap_back(swapped)
            if op == "grad" and not isinstance(out, array):
                raise ValueError("[grad] The return value of the function whose gradient we want to compute "
                                 f"should be a scalar array; but {type(out).__name__} was returned.")
            loss = out[0] if isinstance(out, (list, tuple)) and out else out
            if not isinstance(loss, array):
                raise ValueError("[grad] The function must return an array (or a tuple/list whose first element "
                                 f"is an array), got {type(loss).__name__}.")
            if loss.size != 1 or loss.ndim != 0:
                raise ValueError(f"[grad] The function must return a scalar array; got shape {tuple(loss.shape)}. "
                                 "Reduce it (e.g. with sum or mean) first.")
            seed = _ones_like(loss)
            cts = backward([loss], [seed], targets)
        grads = {id(u): (c if c is not None else _zeros(t)) for u, t, c in zip(user_copies, targets, cts)}

        def pick(x):
            return grads[id(x)] if isinstance(x, array) and id(x) in grads else x

        pos = [tree_map(pick, m) for m in marked_pos]
        kw = {k: tree_map(pick, m) for k, m in marked_kw.items()}
        if names:
            g = (pos[0] if single and nums else (tuple(pos) if pos else None), kw)
        else:
            g = pos[0] if single else tuple(pos)
        return out, g

    return wrapped


def _same(x):
    return x


def _swap_in(tree, mark, swapped: list):
    """`tree` with each array x replaced by mark(x), lists and dicts updated in place (the caller's own
    containers, as MLX: a slot the function assigns keeps its new value); swapped records each slot."""
    if isinstance(tree, (list, dict)):
        for key, child in list(enumerate(tree) if isinstance(tree, list) else tree.items()):
            new = _swap_in(child, mark, swapped)
            if new is not child:
                swapped.append((tree, key, new, child))
                if isinstance(tree, list):
                    tree[key] = new
                else:
                    dict.__setitem__(tree, key, new)  # a Module's own __setitem__ may have side effects
        return tree
    if isinstance(tree, tuple):
        items = [_swap_in(c, mark, swapped) for c in tree]
        return type(tree)(*items) if hasattr(tree, "_fields") else type(tree)(items)
    return mark(tree)


def _swap_back(swapped: list) -> None:
    """Put the caller's arrays back in the slots that still hold the copies the function was given."""
    for container, key, copy, original in reversed(swapped):
        try:
            if container[key] is copy:
                if isinstance(container, list):
                    container[key] = original
                else:
                    dict.__setitem__(container, key, original)
        except (IndexError, KeyError):
            pass  # the function removed the slot


def _ones_like(x):
    from . import ops

    return ops.ones_like(x)


def grad(fun, argnums=None, argnames=()):
    """Returns a function computing the gradient of fun's scalar output (see value_and_grad).

    Args:
        fun (Callable): A function of arrays (or trees of arrays) returning a scalar array.
        argnums (int or list(int), optional): Positional arguments to differentiate; ``0`` by default.
        argnames (str or list(str), optional): Keyword arguments to differentiate.

    Returns:
        Callable: A function returning the gradient(s), shaped like the differentiated arguments.
    """
    vg = _value_and_grad(fun, argnums, argnames, "grad")

    @functools.wraps(fun)
    def wrapped(*args, **kwargs):
        return vg(*args, **kwargs)[1]

    return wrapped


# -- custom_function ---------------------------------------------------------------------------------
def _tree_leaves(tree) -> list:
    """Every leaf of a tree of lists, tuples and dicts, in order (arrays, and ints or None for axes)."""
    leaves = []
    tree_map(leaves.append, tree)
    return leaves


def _tree_fill(tree, values):
    """`tree` with its arrays replaced, in order, by `values` (other leaves stay as they are)."""
    it = iter(values)
    return tree_map(lambda x: next(it) if isinstance(x, array) else x, tree)


class _CustomRecord:
    """What a custom node needs at differentiation time (kept out of the params' text form): the function,
    its arguments and result as trees (their arrays stand for the node's inputs and outputs, in order)."""

    def __init__(self, fn, arguments, result, outputs, index):
        self.fn, self.arguments, self.result = fn, arguments, result
        self.outputs, self.index = outputs, index

    def primals(self, leaves):
        """The positional arguments rebuilt on `leaves` (MLX hands one unwrapped, several as a tuple), and
        the keyword arguments."""
        args, kwargs = _tree_fill(self.arguments, leaves)
        return (args[0] if len(args) == 1 else tuple(args)), kwargs

    def shaped(self, values):
        """values arranged as fun's result was (one array, or its list, tuple or dict)."""
        return _tree_fill(self.result, values)

    def flat_fun(self, *leaves):
        """fun as a function of the argument arrays, returning the result's arrays (for vjp/jvp/vmap)."""
        args, kwargs = _tree_fill(self.arguments, leaves)
        return [x for x in _tree_leaves(self.fn.fun(*args, **kwargs)) if isinstance(x, array)]

    def __repr__(self) -> str:
        return getattr(self.fn.fun, "__name__", "custom")


def _user_values(result, count, what):
    values = [x for x in _tree_leaves(result) if what == "vmap axes" or isinstance(x, array)]
    if len(values) != count:
        raise ValueError(f"[custom_function] The custom {what} returned {len(values)} values, expected {count}.")
    return values


def _custom_vjp(ct, out, inputs, params):
    rec = params["record"]
    leaves = list(inputs[:-1])
    cts = [ct if i == rec.index else _zeros(o) for i, o in enumerate(rec.outputs)]
    if rec.fn._vjp is None:
        grads = vjp(rec.flat_fun, leaves, cts)[1]
    else:
        primals, kwargs = rec.primals(leaves)
        result = rec.fn._vjp(primals, rec.shaped(cts), rec.shaped(rec.outputs), **kwargs)
        grads = _user_values(result, len(leaves), "vjp")
    return tuple(grads) + (None,)


def _custom_jvp(tangents, out, inputs, params):
    rec = params["record"]
    leaves = list(inputs[:-1])
    tans = [t if t is not None else _zeros(p) for t, p in zip(tangents[:-1], leaves)]
    if rec.fn._jvp is None:
        return jvp(rec.flat_fun, leaves, tans)[1][rec.index]
    primals, kwargs = rec.primals(leaves)
    result = rec.fn._jvp(primals, rec.primals(tans)[0], **kwargs)
    return _user_values(result, len(rec.outputs), "jvp")[rec.index]


def _custom_vmap(inputs, bdims, params):
    from .vmap import vmap as _vmap

    rec = params["record"]
    leaves, axes = list(inputs[:-1]), list(bdims[:-1])
    if rec.fn._vmap is None:
        outs = _vmap(rec.flat_fun, in_axes=tuple(axes))(*leaves)
        return _user_values(outs, len(rec.outputs), "vmap")[rec.index], 0
    primals, kwargs = rec.primals(leaves)
    outs, out_axes = rec.fn._vmap(primals, _tree_fill(primals, axes), **kwargs)
    outs = _user_values(outs, len(rec.outputs), "vmap")
    out_axes = _user_values(out_axes, len(rec.outputs), "vmap axes")
    return outs[rec.index], out_axes[rec.index]


def _custom_rule(*xs, record):
    last = xs[-1]
    return tuple(last.shape), last.dtype


register(Primitive("custom", OTHER, impl=lambda *xs, record: xs[-1], shape_rule=_custom_rule,
                   vjp=_custom_vjp, jvp=_custom_jvp, vmap=_custom_vmap))


class custom_function:
    """A function with user-defined vjp / jvp / vmap (MLX's `mx.custom_function`).

    Decorate a function, then register overrides with `@f.vjp`, `@f.jvp`, `@f.vmap`:
    vjp(primals, cotangents, outputs), jvp(primals, tangents), vmap(inputs, axes) -> (outputs, axes).
    """

    def __init__(self, fun):
        self.fun = fun
        self._vjp = self._jvp = self._vmap = None
        functools.update_wrapper(self, fun)

    def vjp(self, f):
        self._vjp = f
        return f

    def jvp(self, f):
        self._jvp = f
        return f

    def vmap(self, f):
        self._vmap = f
        return f

    def __call__(self, *args, **kwargs):
        from . import ops

        # Positional numbers become arrays (differentiable inputs); trees keep their non-array leaves.
        args = tuple(a if isinstance(a, (list, tuple, dict)) else ops.to_array(a) for a in args)
        arguments = (args, dict(kwargs))
        leaves = [x for x in _tree_leaves(arguments) if isinstance(x, array)]
        with transform_scope():
            result = self.fun(*args, **kwargs)
        outs = [x for x in _tree_leaves(result) if isinstance(x, array)]
        if not outs:
            raise ValueError("[custom_function] The function must return an array or a tree of arrays.")
        wrapped = [bind("custom", *leaves, ops.stop_gradient(o),
                        record=_CustomRecord(self, arguments, result, outs, i))
                   for i, o in enumerate(outs)]
        return _tree_fill(result, wrapped)


def checkpoint(fun):
    """Recompute fun's intermediate values in the backward pass instead of keeping them (mx.checkpoint).

    Args:
        fun (Callable): The function to checkpoint.

    Returns:
        Callable: A function with the same outputs whose gradients recompute the intermediates.
    """
    inner = custom_function(fun)

    @inner.vjp
    def _recompute(primals, cotangents, outputs):
        primals = list(primals) if isinstance(primals, tuple) else [primals]
        cts = list(cotangents) if isinstance(cotangents, (list, tuple)) else [cotangents]
        return vjp(fun, primals, cts)[1]

    @functools.wraps(fun)
    def wrapped(*args):
        return inner(*args)

    return wrapped

