"""One thread policy for every pool colorgan runs work on: torch, ONNX Runtime, OpenCV and FFmpeg.

Each library sizes its pool to the machine's cores on its own, and their pools run at the same time
(x264 encodes a batch while torch predicts the next; the decoder reads ahead). Sized that way, the
pools together hold several times as many busy threads as there are cores, and OpenMP threads that
wait at a barrier for a descheduled sibling spin for their whole time slice: on 2 cores,
`colorize-video` ran at 2.7-3.8 frames/s where one torch thread gave 7.7 (issue 22).

The policy (`default_threads`): one request gets the cores this process may run on
(`available_cores`: CPU affinity and the cgroup's CPU quota, not the machine's core count), divided
among the requests a server runs at once. torch's intra-op pool takes them, and ONNX Runtime's
(which reads torch's count when a session is made). Video leaves one of them to the decoder, the
encoder and OpenCV's flow, which run beside torch with one thread each: measured on 2 cores, one
torch thread gave 7-9 frames/s and two gave 1.5-2 (docs/speed.md). OMP_NUM_THREADS, when set,
is the torch thread count, as the user asked.

The Python API and the command line go through `use_threads` (for one call: `colorize_video`) or
`set_threads` (for the process: the CLI and the app, at start-up); the app passes its workers' share.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

# FFmpeg's own threads (decoder, x264) and OpenCV's: they overlap torch's work, so one each
CODEC_THREADS = 1
OPENCV_THREADS = 1


def available_cores() -> int:
    """The cores this process may run on: its CPU affinity, capped by a cgroup v2 CPU quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:  # a container limited to "150000 100000" (1.5 CPUs) gets 1 thread, not the host's count
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cores = min(cores, max(1, math.floor(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def default_threads(*, workers: int = 1, video: bool = False) -> int:
    """torch threads for one request: OMP_NUM_THREADS when set to a number, else the policy's share.

    Args:
        workers: requests that run at once, each on its share of `available_cores()`.
        video: leave one core of the share to the codecs and the optical flow.
    """
    requested = os.environ.get("OMP_NUM_THREADS", "").strip()
    if requested.isdigit() and int(requested) > 0:
        return int(requested)
    share = max(1, available_cores() // max(1, workers))
    return max(1, share - 1) if video else share


def set_threads(threads: int | None = None) -> int:
    """Size torch's and OpenCV's pools for this process; returns torch's thread count.

    Call it before loading an ONNX Runtime model: its session takes torch's count when it is made.

    Args:
        threads: torch intra-op threads; by default `default_threads()`, a whole request's.
    """
    import cv2

    threads = threads or default_threads()
    torch.set_num_threads(threads)
    cv2.setNumThreads(OPENCV_THREADS)
    return threads


@contextmanager
def use_threads(threads: int | None = None, *, video: bool = False) -> Iterator[int]:
    """`set_threads` for the duration of a call, then the caller's torch and OpenCV counts again.

    Args:
        threads: torch intra-op threads; by default `default_threads(video=video)`.
        video: the call decodes and encodes video beside torch's work.
    """
    import cv2

    before, before_opencv = torch.get_num_threads(), cv2.getNumThreads()
    try:
        yield set_threads(threads or default_threads(video=video))
    finally:
        torch.set_num_threads(before)
        cv2.setNumThreads(before_opencv)
