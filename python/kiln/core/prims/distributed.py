"""Communication primitives (mx.distributed): all_sum, all_max, all_min, all_gather, sum_scatter, send, recv.

The `group` param carries the Group, which moves the bytes (core/distributed.py); in a group of one
process each is the identity (all_gather stacks a scalar). They are OTHER-kind records with effects: the
engine never merges two of them, and tracing never folds one into a trace-time constant.
Gradients follow MLX: a replicated output's cotangent is the same on every rank, so all_sum passes it
through and all_gather hands each rank its own slice; the others have no derivative rules, as in MLX.
"""

from __future__ import annotations

from ..primitives import OTHER, Primitive, register


def _same_rule(x, group, **_):
    return tuple(x.shape), x.dtype


def _gathered_shape(shape: tuple, size: int) -> tuple:
    return (size * shape[0],) + tuple(shape[1:]) if shape else (size,)


def _all_gather_rule(x, group):
    return _gathered_shape(tuple(x.shape), group.size()), x.dtype


def _sum_scatter_rule(x, group):
    size = group.size()
    if not x.shape or x.shape[0] % size:
        raise ValueError(f"[sum_scatter] Invalid shape={tuple(x.shape)} for a group of size {size}. The first "
                         "dimension (axis 0) must be divisible by the group size.")
    return (x.shape[0] // size,) + tuple(x.shape[1:]), x.dtype


def _recv_rule(shape, dtype, src, group):
    return tuple(shape), dtype


# -- implementations: the group does the communication -------------------------------------------------------
def _reduce_impl(op):
    def impl(x, group):
        return group._all_reduce(op, x)

    return impl


def _all_gather_impl(x, group):
    return group._all_gather("all_gather", x)


def _sum_scatter_impl(x, group):
    return group._sum_scatter(x)


def _send_impl(x, dst, group):
    return group._send(x, dst)


def _recv_impl(shape, dtype, src, group):
    return group._recv(tuple(shape), dtype, src)


# -- transform rules ----------------------------------------------------------------------------------------
def _all_sum_vjp(ct, out, inputs, params):
    return (ct,)


def _all_sum_jvp(tangents, out, inputs, params):
    from ..array import bind

    return bind("all_sum", tangents[0], **params)


def _all_gather_vjp(ct, out, inputs, params):
    from .. import ops

    x = inputs[0]
    rank = params["group"].rank()
    if not x.shape:
        return (ops.reshape(ct[rank], ()),)
    rows = x.shape[0]
    return (ct[rank * rows:(rank + 1) * rows],)


def _all_gather_jvp(tangents, out, inputs, params):
    from ..array import bind

    return bind("all_gather", tangents[0], **params)


def _no_derivative(name):
    def rule(*args):
        raise ValueError(f"[{name}] has no derivative (as in MLX): compute gradients before communicating, "
                         "or use all_sum / all_gather.")

    return rule


def _elementwise_vmap(name):
    def rule(inputs, bdims, params):
        from ..array import bind

        return bind(name, inputs[0], **params), bdims[0]

    return rule


def _first_axis_vmap(name):
    # all_gather and sum_scatter work on axis 0 of each example: the batch goes to axis 1, out of the way.
    def rule(inputs, bdims, params):
        from .. import ops
        from ..array import bind

        x, bdim = inputs[0], bdims[0]
        if x.ndim == 1 and name == "sum_scatter":
            raise ValueError("[sum_scatter] Invalid shape=() for a group: the input needs an axis 0 to scatter.")
        x = ops.expand_dims(x, 0) if x.ndim == 1 else ops.moveaxis(x, bdim, 1)
        return bind(name, x, **params), 1

    return rule


def _recv_vmap(inputs, bdims, params):
    from ..array import bind

    return bind("recv", **params), None


for _name in ("all_sum", "all_max", "all_min"):
    _is_sum = _name == "all_sum"
    register(Primitive(
        name=_name, kind=OTHER, impl=_reduce_impl(_name), shape_rule=_same_rule,
        vjp=_all_sum_vjp if _is_sum else _no_derivative(_name), jvp=_all_sum_jvp if _is_sum else _no_derivative(_name),
        vmap=_elementwise_vmap(_name), effects=True,
        doc=f"{_name} across the processes of params['group'] (elementwise over ranks).",
    ))
register(Primitive(
    name="all_gather", kind=OTHER, impl=_all_gather_impl, shape_rule=_all_gather_rule, vjp=_all_gather_vjp,
    jvp=_all_gather_jvp, vmap=_first_axis_vmap("all_gather"), effects=True,
    doc="Concatenate every rank's input along axis 0, in rank order (scalars are stacked).",
))
register(Primitive(
    name="sum_scatter", kind=OTHER, impl=_sum_scatter_impl, shape_rule=_sum_scatter_rule,
    vjp=_no_derivative("sum_scatter"), jvp=_no_derivative("sum_scatter"), vmap=_first_axis_vmap("sum_scatter"),
    effects=True, doc="This rank's slice of axis 0 of the sum over ranks (a reduce-scatter).",
))
register(Primitive(
    name="send", kind=OTHER, impl=_send_impl, shape_rule=_same_rule, vjp=_no_derivative("send"),
    jvp=_no_derivative("send"), vmap=_elementwise_vmap("send"), effects=True,
    doc="Send the input to rank params['dst']; the output is the input.",
))
register(Primitive(
    name="recv", kind=OTHER, impl=_recv_impl, shape_rule=_recv_rule, vmap=_recv_vmap, differentiable=False,
    effects=True, doc="An array of params shape and dtype received from rank params['src'].",
))
