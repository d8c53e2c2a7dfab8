"""`Module`: MLX's model container. A dict subclass whose array, list and dict attributes are its parameters
and whose Module attributes are its children, so a model *is* its own parameter tree (and `state`)."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from typing import Any

import numpy as np

import kiln.core as mx
from kiln.utils import tree_flatten, tree_unflatten


class Module(dict):
    """Base class for building neural networks (MLX's ``mlx.nn.Module``).

    Arrays, lists, tuples and dicts assigned as attributes are stored as dictionary entries, so the
    module is a tree of its parameters and submodules. Other attributes are ordinary Python attributes.
    """

    __call__: Callable

    def __init__(self):
        self._no_grad = set()
        self._training = True

    # -- attribute routing ------------------------------------------------------------------------------
    def __getattr__(self, key: str):
        if key in self:
            return self[key]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {key!r}")

    def __setattr__(self, key: str, val: Any):
        if isinstance(val, (mx.array, dict, list, tuple)):
            # A plain attribute of the same name would shadow the entry in __getattr__'s lookup.
            if key in self.__dict__:
                object.__delattr__(self, key)
            self[key] = val
        else:
            super().__setattr__(key, val)
            self.pop(key, None)

    def __delattr__(self, name: str):
        if name in self:
            del self[name]
        else:
            super().__delattr__(name)

    @property
    def training(self) -> bool:
        """Whether the module is in training mode."""
        return self._training

    @property
    def state(self) -> Module:
        """The module's state tree: the module itself (a live dict that `compile` can capture)."""
        return self

    def _extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        children = tree_flatten(self.children(), is_leaf=self.is_module)
        text = f"{type(self).__name__}({self._extra_repr()}"
        for key, child in children:
            text += "\n" + textwrap.indent(f"({key}): {child!r}", prefix="  ")
        if children:
            text += "\n"
        return text + ")"

    # -- filters ----------------------------------------------------------------------------------------
    @staticmethod
    def is_module(value) -> bool:
        return isinstance(value, Module)

    @staticmethod
    def valid_child_filter(module, key, value) -> bool:
        return isinstance(value, (dict, list))

    @staticmethod
    def valid_parameter_filter(module, key, value) -> bool:
        return isinstance(value, (dict, list, mx.array)) and not key.startswith("_")

    @staticmethod
    def trainable_parameter_filter(module, key, value) -> bool:
        return Module.valid_parameter_filter(module, key, value) and key not in module._no_grad

    def filter_and_map(self, filter_fn: Callable[[Module, str, Any], bool],
                       map_fn: Callable | None = None,
                       is_leaf_fn: Callable[[Module, str, Any], bool] | None = None) -> dict:
        """Recursively filter the module's contents and map the kept leaves.

        Args:
            filter_fn (Callable): ``filter_fn(module, key, value)`` decides whether to keep an entry.
            map_fn (Callable, optional): Maps each kept leaf. Default: identity.
            is_leaf_fn (Callable, optional): ``is_leaf_fn(module, key, value)`` says where to stop
              descending. Default: anything that is not a Module, dict or list.

        Returns:
            dict: The filtered and mapped tree.
        """
        map_fn = map_fn or (lambda x: x)
        is_leaf_fn = is_leaf_fn or (lambda m, k, v: not isinstance(v, (Module, dict, list)))
        return {k: _unwrap(self, k, v, filter_fn, map_fn, is_leaf_fn)
                for k, v in self.items() if filter_fn(self, k, v)}

    def parameters(self) -> dict:
        """All the parameters (arrays, recursively) as nested dicts and lists."""
        return self.filter_and_map(self.valid_parameter_filter)

    def trainable_parameters(self) -> dict:
        """The parameters that are not frozen."""
        return self.filter_and_map(self.trainable_parameter_filter)

    def children(self) -> dict:
        """The direct submodules of this module."""
        return self.filter_and_map(self.valid_child_filter, is_leaf_fn=lambda m, k, v: isinstance(v, Module))

    def leaf_modules(self) -> dict:
        """The submodules that have no submodules of their own."""

        def is_leaf_module(m, k, v):
            return isinstance(v, Module) and len(tree_flatten(v.children())) == 0

        return self.filter_and_map(self.valid_child_filter, is_leaf_fn=is_leaf_module)

    # -- updates ----------------------------------------------------------------------------------------
    def update(self, parameters: dict, strict: bool = True) -> Module:
        """Replace the module's parameters with those in ``parameters`` (a full or partial tree).

        Args:
            parameters (dict): A tree of parameters, e.g. from :meth:`parameters` or an optimizer.
            strict (bool): If ``True`` check that ``parameters`` is a subset of the module's
              parameters and holds arrays where the module holds arrays. Default: ``True``.

        Returns:
            The module instance after updating the parameters.
        """
        _update_parameters(self, parameters, strict)
        return self

    def update_modules(self, modules: dict, strict: bool = True) -> Module:
        """Replace submodules with those in ``modules`` (a full or partial tree of modules).

        Args:
            modules (dict): A tree of modules, like :meth:`children` returns.
            strict (bool): If ``True`` check that ``modules`` only names existing submodules.
              Default: ``True``.

        Returns:
            The module instance after updating the submodules.
        """
        _update_modules(self, modules, strict)
        return self

    def apply(self, map_fn: Callable[[mx.array], mx.array],
              filter_fn: Callable[[Module, str, Any], bool] | None = None) -> Module:
        """Map every parameter (as selected by ``filter_fn``) and store the results in the module.

        Args:
            map_fn (Callable): Maps an array to its replacement.
            filter_fn (Callable, optional): Selects the parameters. Default:
              :meth:`valid_parameter_filter`.

        Returns:
            The module instance after updating its parameters.
        """
        filter_fn = filter_fn or Module.valid_parameter_filter
        self.update(self.filter_and_map(filter_fn, map_fn))
        return self

    def apply_to_modules(self, apply_fn: Callable[[str, Module], Any]) -> Module:
        """Call ``apply_fn(path, module)`` on this module and every submodule (path like ``"layers.0"``).

        Returns:
            The module instance.
        """
        stack = [("", self)]
        while stack:
            prefix, module = stack.pop()
            apply_fn(prefix, module)
            prefix = "." + prefix if prefix else ""
            stack.extend(tree_flatten(module.children(), prefix=prefix, is_leaf=self.is_module))
        return self

    def modules(self) -> list:
        """This module and every submodule, as a list."""
        found = []
        self.apply_to_modules(lambda path, m: found.append(m))
        return found

    def named_modules(self) -> list:
        """(dotted path, module) for this module and every submodule."""
        found = []
        self.apply_to_modules(lambda path, m: found.append((path, m)))
        return found

    # -- freezing and modes -----------------------------------------------------------------------------
    def _validate_keys(self, keys, strict: bool) -> list:
        keys = keys if isinstance(keys, list) else [keys]
        if strict:
            for k in keys:
                if k not in self:
                    raise KeyError(f"Module doesn't contain member {k}.")
        return keys

    def _validate_keys_recursive(self, keys):
        keys = keys if isinstance(keys, list) else [keys]
        modules = self.modules()
        for k in keys:
            if not any(k in m for m in modules):
                raise KeyError(f"Module doesn't contain member {k}.")

    def freeze(self, *, recurse: bool = True, keys: str | list[str] | None = None,
               strict: bool = False) -> Module:
        """Freeze the module's parameters (or those named by ``keys``): no gradients are taken for them.

        Args:
            recurse (bool, optional): Freeze the submodules' parameters too. Default: ``True``.
            keys (str or list[str], optional): Only freeze these local parameter names. Default: all.
            strict (bool, optional): Check that the keys exist. Default: ``False``.

        Returns:
            The module instance after freezing the parameters.
        """

        def freeze_one(_, module):
            local = keys
            if local is None:
                own = module.filter_and_map(
                    lambda m, k, v: not isinstance(v, Module) and m.valid_parameter_filter(m, k, v))
                local = [k for k, _ in tree_flatten(own)]
            module._no_grad.update(module._validate_keys(local, strict_here))

        strict_here = strict
        if recurse:
            if strict and keys is not None:
                self._validate_keys_recursive(keys)
                strict_here = False
            self.apply_to_modules(freeze_one)
        else:
            freeze_one("", self)
        return self

    def unfreeze(self, *, recurse: bool = True, keys: str | list[str] | None = None,
                 strict: bool = False) -> Module:
        """Unfreeze the module's parameters (or those named by ``keys``).

        Args:
            recurse (bool, optional): Unfreeze the submodules' parameters too. Default: ``True``.
            keys (str or list[str], optional): Only unfreeze these local parameter names. Default: all.
            strict (bool, optional): Check that the keys exist. Default: ``False``.

        Returns:
            The module instance after unfreezing the parameters.
        """

        def unfreeze_one(_, module):
            if keys is None:
                module._no_grad.clear()
            else:
                module._no_grad.difference_update(module._validate_keys(keys, strict_here))

        strict_here = strict
        if recurse:
            if strict and keys is not None:
                self._validate_keys_recursive(keys)
                strict_here = False
            self.apply_to_modules(unfreeze_one)
        else:
            unfreeze_one("", self)
        return self

    def _set_training_mode(self, mode: bool) -> None:
        self._training = mode

    def train(self, mode: bool = True) -> Module:
        """Set the model in (or out of) training mode (affects e.g. Dropout and BatchNorm).

        Returns:
            The module instance.
        """
        self.apply_to_modules(lambda _, m: m._set_training_mode(mode))
        return self

    def eval(self) -> Module:
        """Set the model to evaluation mode (``train(False)``)."""
        return self.train(False)

    def set_dtype(self, dtype, predicate: Callable | None = lambda d: mx.issubdtype(d, mx.floating)):
        """Cast the parameters whose dtype satisfies ``predicate`` (default: floating) to ``dtype``."""
        if predicate is None:
            def predicate(_):
                return True
        self.apply(lambda x: x.astype(dtype) if predicate(x.dtype) else x)

    # -- weights on disk --------------------------------------------------------------------------------
    def save_weights(self, file: str):
        """Save the model's parameters to a ``.npz`` or ``.safetensors`` file."""
        weights = dict(tree_flatten(self.parameters()))
        if file.endswith(".npz"):
            np.savez(file, **{k: _to_numpy(v) for k, v in weights.items()})
        elif file.endswith(".safetensors"):
            from safetensors.numpy import save_file

            save_file({k: np.ascontiguousarray(_to_numpy(v)) for k, v in weights.items()}, file)
        else:
            raise ValueError("Unsupported file extension. Use '.npz' or '.safetensors'.")

    def load_weights(self, file_or_weights: str | list[tuple[str, mx.array]], strict: bool = True) -> Module:
        """Update the model's weights from a ``.npz`` or ``.safetensors`` file, or a list of (name, array).

        Args:
            file_or_weights (str or list(tuple(str, array))): The file, or pairs of parameter names and arrays.
            strict (bool, optional): Check that the weights match the model's parameters exactly (names
              and shapes). Default: ``True``.

        Returns:
            The module instance after updating the weights.
        """
        weights = file_or_weights
        if isinstance(weights, str):
            weights = list(_load_file(weights).items())
        if strict:
            _check_weights(dict(weights), dict(tree_flatten(self.parameters())))
        if len(weights) != 0:
            self.update(tree_unflatten(list(weights)), strict=False)
        return self


def _to_numpy(a) -> np.ndarray:
    return np.array(a)


def _load_file(path: str) -> dict:
    if path.endswith(".npz"):
        with np.load(path) as data:
            return {k: mx.array(data[k]) for k in data.files}
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file

        return {k: mx.array(v) for k, v in load_file(path).items()}
    raise ValueError(f"[load_weights] Unsupported file extension for {path!r}. Use '.npz' or '.safetensors'.")


def _check_weights(new: dict, current: dict):
    extras = new.keys() - current.keys()
    if extras:
        listed = ",\n".join(sorted(extras))
        raise ValueError(f"Received {len(extras)} parameters not in model: \n{listed}.")
    missing = current.keys() - new.keys()
    if missing:
        listed = ",\n".join(sorted(missing))
        raise ValueError(f"Missing {len(missing)} parameters: \n{listed}.")
    for k, v in current.items():
        v_new = new[k]
        if not isinstance(v_new, mx.array):
            raise ValueError(f"Expected mx.array but received {type(v_new)} for parameter {k}")
        if tuple(v_new.shape) != tuple(v.shape):
            raise ValueError(f"Expected shape {tuple(v.shape)} but received shape {tuple(v_new.shape)} for "
                             f"parameter {k}")


def _unwrap(module, key, value, filter_fn, map_fn, is_leaf_fn):
    """One step of filter_and_map: filtered-out list/dict entries become {} so positions are kept."""
    if is_leaf_fn(module, key, value):
        return map_fn(value)
    if isinstance(value, Module):
        return {k: _unwrap(value, k, v, filter_fn, map_fn, is_leaf_fn)
                for k, v in value.items() if filter_fn(value, k, v)}
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            path = f"{key}.{k}"
            out[k] = _unwrap(module, path, v, filter_fn, map_fn, is_leaf_fn) if filter_fn(module, path, v) else {}
        return out
    if isinstance(value, list):
        out = []
        for i, v in enumerate(value):
            path = f"{key}.{i}"
            out.append(_unwrap(module, path, v, filter_fn, map_fn, is_leaf_fn) if filter_fn(module, path, v) else {})
        return out
    raise RuntimeError("Unexpected leaf found while traversing the module")


def _entries(dst, source, strict, kind):
    """(container, key, new value) for each entry of `source` that `dst` has; the rest raise if strict."""
    if isinstance(source, dict):
        for k in source:
            if k in dst:
                yield k, source[k]
            elif strict:
                raise ValueError(f'Module does not have {kind} named "{k}".')
    elif isinstance(source, list):
        for i in range(len(source)):
            if i >= len(dst):
                if strict:
                    raise ValueError(f"List index {i} is out of bounds for destination of length {len(dst)}.")
                continue
            yield i, source[i]
    elif strict:
        raise ValueError(f"Received invalid type: {type(source).__name__}.")


def _update_parameters(dst, parameters, strict):
    for k, new in _entries(dst, parameters, strict, "parameter"):
        current = dst[k]
        if isinstance(current, mx.array):
            if strict and not isinstance(new, mx.array):
                raise ValueError(f"Received invalid type: {type(new).__name__}.")
            dst[k] = new
        else:
            _update_parameters(current, new, strict)


def _update_modules(dst, modules, strict):
    for k, new in _entries(dst, modules, strict, "sub-module"):
        current = dst[k]
        if isinstance(current, Module) and isinstance(new, Module):
            dst[k] = new
        elif isinstance(current, (dict, list)):
            _update_modules(current, new, strict)
        elif strict and new != {}:
            raise ValueError(f"Received invalid type: {type(new).__name__}.")
