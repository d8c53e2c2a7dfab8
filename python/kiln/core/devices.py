"""Devices and streams, minimal but real so MLX code runs unchanged: kiln computes on the CPU (the Metal
backend is for a later issue), evaluation is synchronous, so `synchronize` has nothing to wait for."""

from __future__ import annotations

import enum
import threading

__all__ = ["clear_streams", "StreamContext", "ThreadLocalStream", "new_thread_local_stream",
           "new_thread_unsafe_stream", "DeviceType", "Device", "Stream", "cpu", "gpu", "default_device",
           "set_default_device", "default_stream", "set_default_stream", "new_stream", "stream", "synchronize",
           "is_available", "device_count"]


class DeviceType(enum.Enum):
    """The kinds of device (MLX's ``mx.DeviceType``): ``cpu`` and ``gpu``; kiln runs on the CPU."""

    cpu = "cpu"
    gpu = "gpu"

    def __repr__(self) -> str:
        return f"DeviceType.{self.value}"

    __str__ = __repr__


cpu = DeviceType.cpu
gpu = DeviceType.gpu


class Device:
    """A device: a type and an index."""

    def __init__(self, type: DeviceType, index: int = 0):  # noqa: A002
        self.type = type
        self.index = index

    def __repr__(self) -> str:
        return f"Device({self.type.value}, {self.index})"

    def __eq__(self, other) -> bool:
        if isinstance(other, DeviceType):
            return self.type == other
        return isinstance(other, Device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self) -> int:
        return hash((self.type, self.index))


class Stream:
    """A stream of work on a device. A stream from :func:`new_stream` belongs to the thread that made it, as
    in MLX; `owner` is that thread's ident, or None for streams any thread may use."""

    def __init__(self, device: Device, index: int, owner: int | None = None):
        self.device = device
        self.index = index
        self.owner = owner

    def __repr__(self) -> str:
        return f"Stream({self.device!r}, {self.index})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Stream) and (self.device, self.index) == (other.device, other.index)

    def __hash__(self) -> int:
        return hash((self.device, self.index))


_lock = threading.Lock()
_state = {"device": Device(cpu), "next_stream": 1}
_default_streams = {Device(cpu): Stream(Device(cpu), 0)}


def is_available(device) -> bool:
    """Whether a device can run kiln's work (only the CPU can).

    Args:
        device (Device): The device.

    Returns:
        bool: ``True`` for the CPU.
    """
    d = device if isinstance(device, Device) else Device(device)
    return d.type == cpu


def device_count(device_type=cpu) -> int:
    """How many devices of a type there are.

    Args:
        device_type (DeviceType, optional): The type. Default: ``DeviceType.cpu``.

    Returns:
        int: 1 for the CPU, 0 for the GPU.
    """
    return 1 if device_type == cpu else 0


def _as_device(device, op: str) -> Device:
    d = device if isinstance(device, Device) else Device(device) if isinstance(device, DeviceType) else None
    if d is None:
        raise TypeError(f"[{op}] Expected a Device or DeviceType, got {type(device).__name__}.")
    if not is_available(d):
        raise ValueError(f"[{op}] Cannot use {d.type.value} device without a {d.type.value} backend.")
    return d


def default_device() -> Device:
    """The device ops run on by default (the CPU).

    Returns:
        Device: The default device.
    """
    return _state["device"]


def set_default_device(device) -> None:
    """Set the default device (only the CPU is accepted).

    Args:
        device (Device): The device.

    Returns:
        None
    """
    _state["device"] = _as_device(device, "set_default_device")


def default_stream(device) -> Stream:
    """The default stream of a device.

    Args:
        device (Device): The device.

    Returns:
        Stream: The stream.
    """
    return _default_streams[_as_device(device, "default_stream")]


def set_default_stream(stream: Stream) -> None:
    """Set the default stream of its device.

    Args:
        stream (Stream): The stream.

    Returns:
        None
    """
    _default_streams[stream.device] = stream


def new_stream(device) -> Stream:
    """A new stream on a device (kiln runs everything on the CPU, in order).

    Args:
        device (Device): The device.

    Returns:
        Stream: The stream.
    """
    return _numbered_stream(_as_device(device, "new_stream"), threading.get_ident())


def _numbered_stream(device: Device, owner: int | None) -> Stream:
    with _lock:
        index = _state["next_stream"]
        _state["next_stream"] += 1
    return Stream(device, index, owner)


class StreamContext:
    """A context manager for setting the current device and stream (see :func:`stream`).

    Args:
        s: The stream or device to set as the default.
    """

    def __init__(self, s):
        if not isinstance(s, (Stream, ThreadLocalStream)):
            _as_device(s, "stream")
        self.stream = s

    def __enter__(self):
        # MLX raises when work of another thread's stream is evaluated; kiln evaluates on the calling
        # thread, so it refuses the stream where it is entered.
        owner = getattr(self.stream, "owner", None)
        if owner is not None and owner != threading.get_ident():
            raise RuntimeError(f"There is no {self.stream!r} in current thread.")
        return self

    def __exit__(self, *exc):
        return False


def stream(s) -> StreamContext:
    """Run the enclosed ops on stream or device `s` (all kiln work runs on the CPU).

    Args:
        s (Stream or Device): The stream or device to use.

    Returns:
        StreamContext: A context manager.
    """
    return StreamContext(s)


class ThreadLocalStream:
    """A stream that is unique per thread. kiln evaluates synchronously on the calling thread, so each
    thread's work is already separate; this object names the device, as MLX's does."""

    def __init__(self, device: Device, index: int):
        self.device = device
        self.index = index

    def __repr__(self) -> str:
        return f"ThreadLocalStream({self.device!r}, {self.index})"


def new_thread_local_stream(device) -> ThreadLocalStream:
    """Make a new stream that will be unique per thread.

    Args:
        device (Device or DeviceType): The device of the stream.

    Returns:
        ThreadLocalStream: The stream.
    """
    s = _numbered_stream(_as_device(device, "new_thread_local_stream"), None)
    return ThreadLocalStream(s.device, s.index)


def new_thread_unsafe_stream(device) -> Stream:
    """Make a new stream that can be used in any thread.

    Args:
        device (Device or DeviceType): The device of the stream.

    Returns:
        Stream: The stream.
    """
    return _numbered_stream(_as_device(device, "new_thread_unsafe_stream"), None)


def synchronize(stream: Stream | None = None) -> None:
    """Wait for outstanding work: kiln evaluates synchronously, so there is none.

    Args:
        stream (Stream, optional): The stream to wait for.

    Returns:
        None
    """


def clear_streams() -> None:
    """Destroy the streams created so far: kiln's streams hold no resources, so this resets the default
    streams and the stream numbering, as a process that made none.

    Returns:
        None
    """
    with _lock:
        _default_streams.clear()
        _default_streams[Device(cpu)] = Stream(Device(cpu), 0)
        _state["next_stream"] = 1
