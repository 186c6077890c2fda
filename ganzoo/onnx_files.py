"""Where an ONNX file keeps its tensors, read without the onnx package; refuse data outside its folder.

An ONNX model may keep tensors in "external data" files named by a relative
path. A model from elsewhere could name ``/etc/shadow``, ``../../secret`` or a
link that leads out of its folder, and ONNX Runtime would read that file as
weights. Before a session is created, :func:`check_external_data` walks the
protobuf (a small wire-format reader, so the torch-free runtime needs no onnx
package) and refuses any location that is absolute, climbs with ``..``, passes
through a link or resolves outside the model's folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import UserError

# Field numbers from onnx.proto: only the messages that can hold a TensorProto.
MODEL_GRAPH, MODEL_TRAINING_INFO, MODEL_FUNCTIONS = 7, 20, 25
TRAINING_GRAPHS = (1, 2)  # TrainingInfoProto.initialization, .algorithm
GRAPH_NODE, GRAPH_INITIALIZER, GRAPH_SPARSE_INITIALIZER = 1, 5, 15
FUNCTION_NODE = 7
NODE_ATTRIBUTE = 5
ATTR_TENSOR, ATTR_GRAPH, ATTR_TENSORS, ATTR_GRAPHS, ATTR_SPARSE, ATTR_SPARSES = 5, 6, 10, 11, 22, 23
SPARSE_VALUES, SPARSE_INDICES = 1, 2
TENSOR_NAME, TENSOR_EXTERNAL_DATA, TENSOR_DATA_LOCATION = 8, 13, 14
ENTRY_KEY, ENTRY_VALUE = 1, 2
EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(buf: memoryview):
    """(field number, value) for each field of one message: ints for varints, memoryviews for bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = None, pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise ValueError("truncated field")
            value, pos = buf[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = None, pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, value


def _tensor(buf: memoryview, found: list[tuple[str, str]]) -> None:
    name, location, external = "", None, False
    for number, value in _fields(buf):
        if number == TENSOR_NAME:
            name = bytes(value).decode("utf-8", "replace")
        elif number == TENSOR_DATA_LOCATION:
            external = value == EXTERNAL
        elif number == TENSOR_EXTERNAL_DATA:
            entry = dict(_fields(value))
            if bytes(entry.get(ENTRY_KEY, b"")) == b"location":
                location = bytes(entry.get(ENTRY_VALUE, b"")).decode("utf-8", "replace")
    if external or location is not None:
        found.append((name, location or ""))


def _sparse(buf: memoryview, found) -> None:
    for number, value in _fields(buf):
        if number in (SPARSE_VALUES, SPARSE_INDICES):
            _tensor(value, found)


def _node(buf: memoryview, found) -> None:
    for number, value in _fields(buf):
        if number != NODE_ATTRIBUTE:
            continue
        for attr_number, attr_value in _fields(value):
            if attr_number in (ATTR_TENSOR, ATTR_TENSORS):
                _tensor(attr_value, found)
            elif attr_number in (ATTR_GRAPH, ATTR_GRAPHS):
                _graph(attr_value, found)
            elif attr_number in (ATTR_SPARSE, ATTR_SPARSES):
                _sparse(attr_value, found)


def _graph(buf: memoryview, found) -> None:
    for number, value in _fields(buf):
        if number == GRAPH_INITIALIZER:
            _tensor(value, found)
        elif number == GRAPH_SPARSE_INITIALIZER:
            _sparse(value, found)
        elif number == GRAPH_NODE:
            _node(value, found)


def external_data_locations(model: bytes) -> list[tuple[str, str]]:
    """(tensor name, location) of every tensor kept outside the file, anywhere in the model."""
    found: list[tuple[str, str]] = []
    for number, value in _fields(memoryview(model)):
        if number == MODEL_GRAPH:
            _graph(value, found)
        elif number == MODEL_FUNCTIONS:
            for fn_number, fn_value in _fields(value):
                if fn_number == FUNCTION_NODE:
                    _node(fn_value, found)
        elif number == MODEL_TRAINING_INFO:
            for info_number, info_value in _fields(value):
                if info_number in TRAINING_GRAPHS:
                    _graph(info_value, found)
    return found


def _problem(folder: Path, location: str) -> str | None:
    """Why ``location`` may not be read for a model in ``folder``, or None when it is safe."""
    if not location:
        return "an empty path"
    if os.path.isabs(location) or location.startswith(("/", "\\")) or (len(location) > 1 and location[1] == ":"):
        return "an absolute path"
    parts = Path(location.replace("\\", "/")).parts
    if ".." in parts:
        return "a path that climbs out with '..'"
    current = folder
    for part in parts:
        current = current / part
        if current.is_symlink():
            return f"a path through the link {current.name}"
    real_folder = folder.resolve()
    if not current.resolve().is_relative_to(real_folder):
        return "outside the model's folder"
    if not current.is_file():
        return "missing"
    return None


def check_external_data(path: Path) -> None:
    """Raise a UserError naming the tensor and path if ``path`` keeps data anywhere but beside itself."""
    path = Path(path)
    try:
        model = path.read_bytes()
        locations = external_data_locations(model)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UserError(f"{path} is not an ONNX model ({exc})") from None
    for name, location in locations:
        problem = _problem(path.parent, location)
        if problem:
            raise UserError(f"{path}: refusing to load: tensor {name!r} keeps its data at {location!r}, "
                            f"which is {problem}; external data must be plain files in the model's folder")
