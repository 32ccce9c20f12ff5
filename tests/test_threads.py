"""The thread policy (colorgan/threads.py): one count for torch and ONNX Runtime, fitted to the process's cores."""
from __future__ import annotations

import os

import cv2
import pytest
import torch

from colorgan import threads
from colorgan.threads import available_cores, default_threads, set_threads, use_threads


@pytest.fixture
def four_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "available_cores", lambda: 4)


def test_available_cores_follows_the_affinity_not_the_machine():
    assert 1 <= available_cores() <= len(os.sched_getaffinity(0)) <= os.cpu_count()


def test_the_policy_splits_the_cores_between_workers_and_leaves_video_one(four_cores):
    assert default_threads() == 4
    assert default_threads(workers=2) == 2
    assert default_threads(video=True) == 3  # the decoder, the encoder and the flow get the fourth
    assert default_threads(workers=2, video=True) == 1
    assert default_threads(workers=8) == 1 and default_threads(workers=8, video=True) == 1


def test_omp_num_threads_is_what_the_user_asked(four_cores, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads() == default_threads(video=True) == default_threads(workers=2) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "not a number")
    assert default_threads() == 4


def test_use_threads_sets_torch_and_opencv_then_puts_them_back(four_cores):
    before, before_opencv = torch.get_num_threads(), cv2.getNumThreads()
    try:
        set_threads(2)
        cv2.setNumThreads(2)
        with use_threads(video=True) as count:
            assert count == torch.get_num_threads() == 3
            assert cv2.getNumThreads() == threads.OPENCV_THREADS == 1
        assert torch.get_num_threads() == 2 and cv2.getNumThreads() == 2
    finally:
        torch.set_num_threads(before)
        cv2.setNumThreads(before_opencv)


def test_colorize_video_runs_on_the_policy_and_leaves_the_callers_threads(tiny_model_dir, tmp_path, monkeypatch):
    from PIL import Image

    from colorgan import Colorizer
    from colorgan.evaluation.video import encode_clip, synthetic_clip
    from colorgan.video import colorize_video

    colorizer = Colorizer.from_pretrained(tiny_model_dir, device="cpu")
    clip = tmp_path / "clip.mp4"
    encode_clip(synthetic_clip(Image.new("RGB", (160, 120), (90, 120, 60)), "pan", (96, 64), 4), clip, 12)
    seen = []
    predict = colorizer.predict
    monkeypatch.setattr(colorizer, "predict", lambda inputs: seen.append(torch.get_num_threads()) or predict(inputs))
    monkeypatch.setattr(threads, "default_threads", lambda **policy: 3 if policy.get("video") else 99)
    before = torch.get_num_threads()
    colorize_video(colorizer, clip, tmp_path / "out.mp4", progress=False)
    assert seen == [3] and torch.get_num_threads() == before
    colorize_video(colorizer, clip, tmp_path / "out2.mp4", progress=False, threads=1)  # the caller's choice
    assert seen == [3, 1] and torch.get_num_threads() == before
