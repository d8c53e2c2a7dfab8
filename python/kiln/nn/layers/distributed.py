"""Tensor-parallel linear layers (MLX's `mlx.nn.layers.distributed`): each process of a group holds a shard of
the weight; `shard_linear` and `shard_inplace` cut an ordinary layer's parameters into those shards, and
`fully_shard` keeps only a shard of any module's parameters on each process (gathered for each call).

"all-to-sharded": every rank holds the same input and computes its slice of the output features (the
gradient of the shared input is summed over ranks). "sharded-to-all": every rank holds a slice of the input
features and the partial products are summed with all_sum, so every rank ends with the full output.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from functools import lru_cache

import kiln.core as mx
from kiln.utils import tree_flatten, tree_map_with_path, tree_unflatten

from .base import Module
from .linear import Linear

_SHARDINGS = ("all-to-sharded", "sharded-to-all")


@lru_cache(maxsize=None)
def sum_gradients(group):
    """The identity whose gradient is summed over `group` (the shared input of an all-to-sharded layer)."""
    if group.size() == 1:
        return lambda x: x

    @mx.custom_function
    def identity(x):
        return x

    @identity.vjp
    def identity_vjp(x, cotangent, output):
        return mx.distributed.all_sum(cotangent, group=group)

    return identity


def _split(weight, segments, axis: int) -> list:
    """mx.split, where `segments` may also be fractions of the axis (e.g. [0.25, 0.5])."""
    if isinstance(segments, (list, tuple)) and segments and not isinstance(segments[0], int):
        segments = [int(s * weight.shape[axis]) for s in segments]
    return mx.split(weight, segments, axis=axis)


def _shard(parameters: dict, predicate: Callable, group) -> dict:
    """The parameter tree with each weight replaced by this rank's shard.

    `predicate(path, weight)` returns None (keep the weight), an axis, or (axis, segments): the weight is
    made of `segments` parts along `axis` (e.g. a fused QKV projection has 3) and each part is split evenly
    over the group.
    """
    group = group or mx.distributed.init()
    size, rank = group.size(), group.rank()

    def shard(path, weight):
        if not isinstance(weight, mx.array):
            return weight
        rule = predicate(path, weight)
        if rule is None:
            return weight
        if isinstance(rule, int):
            axis, segments = rule, 1
        elif isinstance(rule, tuple):
            axis, segments = rule
        else:
            raise ValueError("The sharding function should return int or tuple[int, list]")
        parts = [mx.split(part, size, axis=axis)[rank] for part in _split(weight, segments, axis)]
        return mx.contiguous(mx.concatenate(parts, axis=axis))

    return tree_map_with_path(shard, parameters)


def _all_to_sharded(segments):
    # Output features are sharded: axis 0 of a (out, in) weight and its quantization tables, the whole bias.
    return lambda path, weight: (-1, segments) if path.endswith("bias") else (max(weight.ndim - 2, 0), segments)


def _sharded_to_all(segments):
    # Input features are sharded: the last axis of the weight; the bias is added once, after the sum.
    return lambda path, weight: None if path.endswith("bias") else (-1, segments)


def _predicate(sharding: str, segments):
    if sharding not in _SHARDINGS:
        raise ValueError(f"Sharding type sharding='{sharding}' not supported, choose one of 'all-to-sharded' or "
                         "'sharded-to-all'")
    return _all_to_sharded(segments) if sharding == "all-to-sharded" else _sharded_to_all(segments)


def shard_inplace(module: Module, sharding, *, segments=1, group=None) -> None:
    """Shard a module in place by replacing its parameters with this rank's shards.

    The module's computation does not change: it must already communicate where needed.

    Args:
        module (Module): The module whose parameters are sharded in place.
        sharding (str or Callable): ``"all-to-sharded"``, ``"sharded-to-all"``, or a callable that, given
            the path and the weight, returns the sharding axis and optionally the segments.
        segments (int or list): The segments to use if ``sharding`` is a string. Default: ``1``.
        group (Group, optional): The group to shard across. Default: ``None`` (the global group).
    """
    predicate = _predicate(sharding, segments) if isinstance(sharding, str) else sharding
    module.update(_shard(module.parameters(), predicate, group))


def shard_linear(module: Module, sharding: str, *, segments=1, group=None) -> Module:
    """A new sharded layer built from a ``Linear`` or ``QuantizedLinear`` (the original is unchanged).

    Args:
        module (Module): The linear layer to shard.
        sharding (str): ``"all-to-sharded"`` or ``"sharded-to-all"``.
        segments (int or list): The segments the weight is made of. Default: ``1``.
        group (Group, optional): The group to shard across. Default: ``None`` (the global group).

    Returns:
        Module: an ``AllToShardedLinear``, ``ShardedToAllLinear`` or their quantized forms.
    """
    _predicate(sharding, segments)
    dense = isinstance(module, Linear)
    cls = {("all-to-sharded", True): AllToShardedLinear, ("sharded-to-all", True): ShardedToAllLinear,
           ("all-to-sharded", False): QuantizedAllToShardedLinear,
           ("sharded-to-all", False): QuantizedShardedToAllLinear}[sharding, dense]
    build = cls.from_linear if dense else cls.from_quantized_linear
    return build(module, segments=segments, group=group)


def _shard_size(total: int, size: int, what: str) -> int:
    if total % size:
        if what == "output":
            raise ValueError(f"Cannot shard the output of size {total} across {size} devices.")
        raise ValueError(f"The input of size {total} cannot be sharded across {size} devices.")
    return total // size


class _ShardedLinear(Module):
    """What the four layers share: the group, the sharded shape, and building one from a full layer."""

    sharding = ""

    def _init_group(self, input_dims: int, output_dims: int, group) -> tuple:
        """Set the group; return this rank's (output, input) weight shape."""
        self.group = group or mx.distributed.init()
        size = self.group.size()
        if self.sharding == "all-to-sharded":
            return _shard_size(output_dims, size, "output"), input_dims
        return output_dims, _shard_size(input_dims, size, "input")

    @classmethod
    def _from_layer(cls, layer: Module, segments, group, **kwargs):
        group = group or mx.distributed.init()
        output_dims, input_dims = layer.weight.shape
        if "bits" in kwargs:
            input_dims = input_dims * 32 // kwargs["bits"]
        sharded = cls(input_dims, output_dims, "bias" in layer, group=group, **kwargs)
        sharded.update(_shard(layer.parameters(), _predicate(cls.sharding, segments), group))
        return sharded


class _DenseSharded(_ShardedLinear):
    def __init__(self, input_dims: int, output_dims: int, bias: bool = True, group=None):
        super().__init__()
        shape = self._init_group(input_dims, output_dims, group)
        scale = math.sqrt(1.0 / input_dims)
        self.weight = mx.random.uniform(low=-scale, high=scale, shape=shape)
        if bias:
            self.bias = mx.random.uniform(low=-scale, high=scale, shape=shape[:1])

    def _extra_repr(self) -> str:
        out_dims, in_dims = self.weight.shape
        if self.sharding == "all-to-sharded":
            out_dims *= self.group.size()
        else:
            in_dims *= self.group.size()
        return f"input_dims={in_dims}, output_dims={out_dims}, bias={'bias' in self}"

    @classmethod
    def from_linear(cls, linear_layer: Module, *, segments=1, group=None):
        """This layer, holding this rank's shard of ``linear_layer``'s parameters."""
        return cls._from_layer(linear_layer, segments, group)


class AllToShardedLinear(_DenseSharded):
    """Each member of the group applies its slice of the output features of an affine transformation, so the
    result is sharded across the group; the gradient of the shared input is summed over the group.

    Args:
        input_dims (int): The dimensionality of the input features.
        output_dims (int): The dimensionality of the output features (over the whole group).
        bias (bool, optional): If ``False`` the layer has no bias. Default: ``True``.
        group (Group, optional): The group to shard across. Default: ``None`` (the global group).
    """

    sharding = "all-to-sharded"

    def __call__(self, x):
        x = sum_gradients(self.group)(x)
        if "bias" in self:
            return mx.addmm(self["bias"], x, self["weight"].T)
        return x @ self["weight"].T


class ShardedToAllLinear(_DenseSharded):
    """Each member of the group applies its slice of the input features of an affine transformation and the
    partial results are summed, so every member ends with the same full output.

    Args:
        input_dims (int): The dimensionality of the input features (over the whole group).
        output_dims (int): The dimensionality of the output features.
        bias (bool, optional): If ``False`` the layer has no bias. Default: ``True``.
        group (Group, optional): The group to shard across. Default: ``None`` (the global group).
    """

    sharding = "sharded-to-all"

    def __call__(self, x):
        x = mx.distributed.all_sum(x @ self["weight"].T, group=self.group)
        return x + self["bias"] if "bias" in self else x


class _QuantizedSharded(_ShardedLinear):
    def __init__(self, input_dims: int, output_dims: int, bias: bool = True, group_size: int = 64, bits: int = 4,
                 mode: str = "affine", group=None):
        super().__init__()
        shape = self._init_group(input_dims, output_dims, group)
        self.group_size, self.bits, self.mode = group_size, bits, mode
        scale = math.sqrt(1.0 / input_dims)
        weight = mx.random.uniform(low=-scale, high=scale, shape=shape)
        self.weight, self.scales, *biases = mx.quantize(weight, group_size, bits, mode=mode)
        self.biases = biases[0] if biases else None
        if bias:
            self.bias = mx.zeros(shape[:1])
        self.freeze()

    def unfreeze(self, *args, **kwargs):
        """Unfreeze contained modules; this layer's quantized parameters stay frozen."""
        super().unfreeze(*args, **kwargs)
        self.freeze(recurse=False)

    def _extra_repr(self) -> str:
        out_dims, in_dims = self.weight.shape
        in_dims = in_dims * 32 // self.bits
        if self.sharding == "all-to-sharded":
            out_dims *= self.group.size()
        else:
            in_dims *= self.group.size()
        return (f"input_dims={in_dims}, output_dims={out_dims}, bias={'bias' in self}, "
                f"group_size={self.group_size}, bits={self.bits}, mode={self.mode}")

    def _matmul(self, x):
        return mx.quantized_matmul(x, self["weight"], scales=self["scales"], biases=self.get("biases"),
                                   transpose=True, group_size=self.group_size, bits=self.bits, mode=self.mode)

    @classmethod
    def from_quantized_linear(cls, quantized_linear_layer: Module, *, segments=1, group=None):
        """This layer, holding this rank's shard of ``quantized_linear_layer``'s parameters."""
        layer = quantized_linear_layer
        return cls._from_layer(layer, segments, group, group_size=layer.group_size, bits=layer.bits,
                               mode=getattr(layer, "mode", "affine"))


class QuantizedAllToShardedLinear(_QuantizedSharded):
    """The quantized form of :class:`AllToShardedLinear`; like ``QuantizedLinear`` its parameters are frozen.

    Args:
        input_dims (int): The dimensionality of the input features.
        output_dims (int): The dimensionality of the output features (over the whole group).
        bias (bool, optional): If ``False`` the layer has no bias. Default: ``True``.
        group_size (int, optional): The quantization group size. Default: ``64``.
        bits (int, optional): The bit width of the quantized weight. Default: ``4``.
        mode (str, optional): The quantization method. Default: ``"affine"``.
        group (Group, optional): The group to shard across. Default: ``None`` (the global group).
    """

    sharding = "all-to-sharded"

    def __call__(self, x):
        x = self._matmul(sum_gradients(self.group)(x))
        return x + self["bias"] if "bias" in self else x


class QuantizedShardedToAllLinear(_QuantizedSharded):
    """The quantized form of :class:`ShardedToAllLinear`; like ``QuantizedLinear`` its parameters are frozen.

    Args:
        input_dims (int): The dimensionality of the input features (over the whole group).
        output_dims (int): The dimensionality of the output features.
        bias (bool, optional): If ``False`` the layer has no bias. Default: ``True``.
        group_size (int, optional): The quantization group size. Default: ``64``.
        bits (int, optional): The bit width of the quantized weight. Default: ``4``.
        mode (str, optional): The quantization method. Default: ``"affine"``.
        group (Group, optional): The group to shard across. Default: ``None`` (the global group).
    """

    sharding = "sharded-to-all"

    def __call__(self, x):
        x = mx.distributed.all_sum(self._matmul(x), group=self.group)
        return x + self["bias"] if "bias" in self else x


def _gather_parameters(group, full_shapes: list, compute_dtype):
    """A differentiable all-gather of parameter shards (each the rank's rows of a parameter).

    Forward: every rank's shards travel in one all_gather and are cut back into full parameters. Backward:
    the full cotangents are summed over ranks with one sum_scatter, each rank keeping its rows, and divided by
    the group size: the shard's gradient is the mean of the ranks' gradients (data-parallel training).
    """
    size = group.size()
    lengths = [math.prod(shape) // size for shape in full_shapes]
    offsets = list(itertools.accumulate(lengths))[:-1]

    def cast(a):
        return a if compute_dtype is None or a.dtype == compute_dtype else a.astype(compute_dtype)

    @mx.custom_function
    def gather(*shards):
        row = mx.concatenate([cast(s.reshape(1, -1)) for s in shards], axis=1)
        rows = mx.distributed.all_gather(row, group=group)  # (size, total): rank k's shards in row k
        return [part.reshape(shape) for part, shape in zip(mx.split(rows, offsets, axis=1), full_shapes)]

    @gather.vjp
    def gather_vjp(shards, cotangents, outputs):
        shards = shards if isinstance(shards, (list, tuple)) else [shards]
        cotangents = cotangents if isinstance(cotangents, (list, tuple)) else [cotangents]
        joined = mx.concatenate([c.reshape(size, -1) for c in cotangents], axis=1)
        mine = mx.distributed.sum_scatter(joined, group=group) / size
        return tuple(part.reshape(s.shape).astype(s.dtype)
                     for part, s in zip(mx.split(mine, offsets, axis=1), shards))

    return gather


def _shardable(module, key, value) -> bool:
    return not isinstance(value, FullyShardedModule) and Module.valid_parameter_filter(module, key, value)


class FullyShardedModule(Module):
    """Wrap a module so each member of the group holds only a shard (rows of axis 0) of its parameters.

    The full parameters are gathered for each call and the gradients reduce-scattered (averaged) in the
    backward pass, so each member stores and updates only its shard. Every parameter's axis 0 must be
    divisible by the group size. Build one with :func:`fully_shard`.

    Args:
        module (Module): The module whose parameters are sharded.
        group (Group, optional): The group to shard across. Default: ``None`` (the global group).
        compute_dtype (Dtype, optional): Cast the gathered parameters to this dtype. Default: ``None``.
    """

    def __init__(self, module: Module, group=None, compute_dtype=None):
        super().__init__()
        group = group or mx.distributed.init()
        size = group.size()
        flat = tree_flatten(module.filter_and_map(_shardable))
        for path, a in flat:
            if a.ndim == 0:
                raise ValueError(f"Cannot shard parameter '{path}' because it is a scalar.")
            if a.shape[0] % size:
                raise ValueError(f"Cannot shard parameter '{path}' with shape {a.shape} across {size} devices: "
                                 f"axis 0 must be divisible by {size}.")
        object.__setattr__(self, "_paths", [path for path, _ in flat])  # a plain attribute, not a parameter
        module.update(_shard(module.filter_and_map(_shardable), lambda path, weight: 0, group))
        self.module = module
        self._gather = _gather_parameters(group, [a.shape for _, a in flat], compute_dtype)

    def _extra_repr(self) -> str:
        return f"num_sharded_params={len(self._paths)}"

    def _gathered_call(self, fn, *args, **kwargs):
        shards = self.module.filter_and_map(_shardable)
        full = self._gather(*[a for _, a in tree_flatten(shards)])
        self.module.update(tree_unflatten(list(zip(self._paths, full))))
        try:
            return fn(*args, **kwargs)
        finally:
            self.module.update(shards)

    def __call__(self, *args, **kwargs):
        return self._gathered_call(self.module, *args, **kwargs)

    def as_linear(self, *args, **kwargs):
        """The wrapped module's ``as_linear`` with the full parameters (e.g. a tied embedding)."""
        return self._gathered_call(self.module.as_linear, *args, **kwargs)


def fully_shard(module: Module, *, group=None, compute_dtype=None) -> Module:
    """Wrap ``module`` in a :class:`FullyShardedModule`.

    Args:
        module (Module): The module to wrap.
        group (Group, optional): The group to shard across. Default: ``None`` (the global group).
        compute_dtype (Dtype, optional): Cast the gathered parameters to this dtype. Default: ``None``.

    Returns:
        Module: the wrapped module, or ``module`` itself in a group of one, when it is wrapped already, or
        when it has no parameters to shard.
    """
    group = group or mx.distributed.init()
    if group.size() == 1 or isinstance(module, FullyShardedModule):
        return module
    wrapped = FullyShardedModule(module, group=group, compute_dtype=compute_dtype)
    return wrapped if wrapped._paths else module
