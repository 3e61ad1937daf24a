"""Which precision `--dtype auto` picks: detected, never assumed."""

from __future__ import annotations

import pytest

from ingest.embedders import local
from ingest.errors import EmbedderError
from ingest.settings import EmbedderSettings


@pytest.mark.parametrize(
    "native, device, expected",
    [
        (True, "cpu", "bfloat16"),  # AVX512-BF16, AMX or Arm BF16: about 3x float32
        (False, "cpu", "float32"),  # emulated bfloat16 is slower than float32
        (True, "cuda", "float16"),
        (False, "mps", "float16"),
    ],
)
def test_auto_picks_by_device_and_by_what_the_cpu_computes(monkeypatch, native, device, expected):
    monkeypatch.setattr(local, "native_bfloat16", lambda: native)
    assert local.pick_dtype("auto", device) == expected


def test_an_explicit_dtype_is_kept_and_float16_on_a_cpu_is_refused(monkeypatch):
    monkeypatch.setattr(local, "native_bfloat16", lambda: False)
    assert local.pick_dtype("bfloat16", "cpu") == "bfloat16"  # asked for: kept, even emulated
    assert local.pick_dtype("float32", "cuda") == "float32"
    with pytest.raises(EmbedderError, match="float16 needs a GPU.*auto, bfloat16 or float32"):
        local.pick_dtype("float16", "cpu")
    with pytest.raises(EmbedderError, match="unknown dtype 'int8'"):
        local.pick_dtype("int8", "cpu")


def test_auto_is_the_default():
    assert EmbedderSettings().dtype == "auto"


def test_the_detection_answers_on_this_machine():
    pytest.importorskip("torch")
    assert local.native_bfloat16() in (True, False)
