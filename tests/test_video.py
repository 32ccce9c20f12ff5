"""Video: colorize_video keeps the clip's frames, timing, size and audio; colour is carried along
the motion and reset at shot cuts; the flicker metric; bad inputs get one-line errors.

Clips are tiny (64x48 to 96x72, 8-16 frames) and written with PyAV into pytest's temp folders.
"""
from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from colorgan.cli import main
from colorgan.temporal import CarriedHints, ColorMemory, TemporalSettings
from colorgan.evaluation.video import encode_clip, flicker, read_frames, synthetic_clip
from colorgan.video import FrameColorizer, VideoError, colorize_video, probe
from conftest import assert_one_line, val_photo_paths

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def colorizer(tiny_model_dir):
    from colorgan import Colorizer

    return Colorizer.from_pretrained(tiny_model_dir, device="cpu")


@pytest.fixture(scope="module")
def photos(photos_dir) -> list[Image.Image]:
    return [Image.open(path).convert("RGB") for path in val_photo_paths(photos_dir, 2)]


def pan(photo: Image.Image, frames: int = 12, size=(64, 48)) -> list[np.ndarray]:
    return list(synthetic_clip(photo, "pan", size, frames))


def textured(height=48, width=64, seed=0) -> np.ndarray:
    """A smooth random texture, (h, w) float32 in [0, 1]: something optical flow can follow."""
    import cv2

    noise = np.random.default_rng(seed).random((height, width)).astype(np.float32)
    texture = cv2.GaussianBlur(noise, (0, 0), 2.0)
    return (texture - texture.min()) / (texture.max() - texture.min())


def audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(packet) for packet in container.demux(container.streams.audio[0]) if packet.size]


def leftovers(folder: Path) -> list[str]:
    """Hidden or partial files a writer may have left behind."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or "partial" in p.name)


# ----------------------------------------------------------------------------- the container
@pytest.mark.parametrize(
    "suffix, fps, frames, out_suffix",
    [(".mp4", 24, 12, ".mp4"), (".mkv", 15, 9, ".mkv"), (".mov", 30, 10, ".mp4")],
)
def test_frames_fps_size_and_audio_are_kept(colorizer, photos, tmp_path, suffix, fps, frames, out_suffix):
    source, output = tmp_path / f"clip{suffix}", tmp_path / f"colour{out_suffix}"
    encode_clip(pan(photos[0], frames), source, fps, audio_hz=440.0)
    result = colorize_video(colorizer, source, output, progress=False)
    before, after = probe(source), probe(output)
    assert result.frames == frames and result.fps == Fraction(fps)
    assert (after.width, after.height) == (before.width, before.height) == (64, 48)
    assert after.fps == before.fps == Fraction(fps)
    assert after.codec == "h264" and after.audio_streams == 1
    assert after.duration == pytest.approx(before.duration, abs=0.5 / fps)
    colour = list(read_frames(output))
    assert len(colour) == frames and all(f.shape == (48, 64, 3) for f in colour)
    assert max(float(np.ptp(f.astype(int)[..., 0] - f.astype(int)[..., 2])) for f in colour) > 0  # not gray
    assert audio_packets(output) == audio_packets(source)  # copied, byte for byte
    assert leftovers(tmp_path) == []


def test_audio_the_container_cannot_hold_is_reencoded_to_aac(colorizer, photos, tmp_path):
    """A camcorder-style AVI with IMA ADPCM sound, which MP4 cannot hold: the sound is kept as AAC."""
    source, output = tmp_path / "camcorder.avi", tmp_path / "colour.mp4"
    with av.open(str(source), "w") as container:
        video = container.add_stream("mpeg4", rate=12)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream("adpcm_ima_wav", rate=16000, layout="mono")
        for frame in pan(photos[0], 12):
            container.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(video.encode(None))
        tone = (9000 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.int16)
        samples = av.AudioFrame.from_ndarray(tone[None], format="s16", layout="mono")
        samples.sample_rate, samples.pts = 16000, 0
        container.mux(audio.encode(samples))
        container.mux(audio.encode(None))
    colorize_video(colorizer, source, output, progress=False)
    assert probe(output).frames == 12
    with av.open(str(output)) as container:
        sound = container.streams.audio[0]
        assert sound.codec_context.name == "aac" and sound.codec_context.sample_rate == 16000
        assert float(sound.duration * sound.time_base) == pytest.approx(1.0, abs=0.15)


def test_output_keeps_each_frames_lightness(colorizer, photos, tmp_path):
    from skimage.color import rgb2lab

    source, output = tmp_path / "clip.mp4", tmp_path / "colour.mp4"
    encode_clip(pan(photos[1], 8), source, 24)
    colorize_video(colorizer, source, output, saturation=1.2, progress=False)
    for gray, colour in zip(read_frames(source), read_frames(output), strict=True):
        # both went through a lossy H.264 encode, so allow its error
        assert np.abs(rgb2lab(gray)[..., 0] - rgb2lab(colour)[..., 0]).mean() < 2.5


def test_colorize_video_cli(tiny_model_dir, photos, tmp_path, capsys):
    source = tmp_path / "film.mp4"
    encode_clip(pan(photos[0], 8), source, 12)
    assert main(["colorize-video", str(source), "--model", str(tiny_model_dir), "--quiet"]) == 0
    assert probe(tmp_path / "film_color.mp4").frames == 8
    assert "8 frames at 12.000 fps" in capsys.readouterr().err
    # an existing output is not overwritten without --overwrite
    assert main(["colorize-video", str(source), "--model", str(tiny_model_dir), "--quiet"]) == 2
    assert_one_line(capsys.readouterr().err)


# ----------------------------------------------------------------------------- bad inputs
def _truncated(data: bytes, fraction: float) -> bytes:
    return data[: int(len(data) * fraction)]


def make_bad_input(kind: str, folder: Path, photo: Image.Image) -> Path:
    """A file of the given kind of badness."""
    frames = pan(photo, 16)
    if kind == "missing":
        return folder / "missing.mp4"
    if kind == "empty file":
        (path := folder / "empty.mp4").write_bytes(b"")
    elif kind == "not a video":
        (path := folder / "notes.mp4").write_text("these are not the frames you are looking for\n")
    elif kind == "truncated mp4":  # moov at the end: the index is gone
        encode_clip(frames, folder / "whole.mp4", 12)
        (path := folder / "cut.mp4").write_bytes(_truncated((folder / "whole.mp4").read_bytes(), 0.5))
    elif kind == "truncated mp4, index first":
        with av.open(str(folder / "whole.mp4"), "w", options={"movflags": "faststart"}) as container:
            stream = container.add_stream("libx264", rate=12)
            stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode(None))
        (path := folder / "cut.mp4").write_bytes(_truncated((folder / "whole.mp4").read_bytes(), 0.6))
    elif kind == "truncated mkv":
        encode_clip(frames, folder / "whole.mkv", 12)
        (path := folder / "cut.mkv").write_bytes(_truncated((folder / "whole.mkv").read_bytes(), 0.6))
    elif kind == "no video stream":
        path = folder / "tone.m4a"
        with av.open(str(path), "w") as container:
            stream = container.add_stream("aac", rate=16000, layout="mono")
            tone = av.AudioFrame.from_ndarray(np.zeros((1, 4096), np.float32), format="flt", layout="mono")
            tone.sample_rate, tone.pts = 16000, 0
            container.mux(stream.encode(tone))
            container.mux(stream.encode(None))
    elif kind == "zero frames":  # a video track in the header, audio but not one video packet
        path = folder / "silent_film.mkv"
        with av.open(str(path), "w") as container:
            video = container.add_stream("libx264", rate=12)
            video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
            audio = container.add_stream("aac", rate=16000, layout="mono")
            tone = av.AudioFrame.from_ndarray(np.zeros((1, 4096), np.float32), format="flt", layout="mono")
            tone.sample_rate, tone.pts = 16000, 0
            container.mux(audio.encode(tone))
            container.mux(audio.encode(None))
    elif kind == "odd codec":  # an AVI whose video FourCC no decoder knows
        encode_clip(frames, folder / "mpeg4.avi", 12, codec="mpeg4")
        data = (folder / "mpeg4.avi").read_bytes()
        fourcc = re.search(rb"strf.{20}(.{4})", data, re.DOTALL).group(1)  # BITMAPINFOHEADER's compression
        (path := folder / "odd.avi").write_bytes(data.replace(fourcc, b"QQQQ"))
    else:
        raise AssertionError(kind)
    return path


BAD_INPUTS = {
    "missing": "no such file",
    "empty file": "empty file",
    "not a video": "not a video file",
    "truncated mp4": "not a video file, or a corrupt one",
    "truncated mp4, index first": "truncated video",
    "truncated mkv": "truncated video",
    "no video stream": "has no video stream",
    "zero frames": "has no frames",
    "odd codec": "no decoder for its video codec",
}


@pytest.mark.parametrize("kind", BAD_INPUTS)
def test_bad_inputs_get_one_line_errors_and_leave_no_output(colorizer, photos, tmp_path, kind):
    source = make_bad_input(kind, tmp_path, photos[0])
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(VideoError, match=re.escape(BAD_INPUTS[kind])) as caught:
        colorize_video(colorizer, source, out_dir / "colour.mp4", progress=False)
    assert_one_line(str(caught.value))
    assert list(out_dir.iterdir()) == []  # nothing under the final name, no partial file either


@pytest.mark.parametrize("destination", ["colour.gif", "missing_folder/colour.mp4"])
def test_bad_destinations(colorizer, photos, tmp_path, destination):
    source = tmp_path / "clip.mp4"
    encode_clip(pan(photos[0], 4), source, 12)
    with pytest.raises(VideoError) as caught:
        colorize_video(colorizer, source, tmp_path / destination, progress=False)
    assert_one_line(str(caught.value))


def test_bad_input_on_the_command_line(tiny_model_dir, tmp_path, capsys):
    (tmp_path / "notes.mp4").write_text("not a video")
    assert main(["colorize-video", str(tmp_path / "notes.mp4"), "--model", str(tiny_model_dir), "--quiet"]) == 1
    error = capsys.readouterr().err
    assert_one_line(error)
    assert error.startswith("error:") and "not a video file" in error
    assert not (tmp_path / "notes_color.mp4").exists()


# ----------------------------------------------------------------------------- temporal consistency
def test_flow_follows_a_shift_and_confidence_drops_at_the_uncovered_edge():
    texture = textured()
    memory = ColorMemory()
    shift = 3  # the scene moves right by 3 px: current(x) = previous(x - 3)
    previous = torch.from_numpy(texture * 100)[None, None]
    current = torch.from_numpy(np.roll(texture, shift, axis=1) * 100)[None, None]
    assert memory.track(previous) is None  # the first frame has nothing to follow
    motion = memory.track(current)
    assert motion is not None
    inner = (slice(8, -8), slice(8, -8))
    offset = motion.grid[..., 0] - np.arange(64)[None, :]
    assert np.median(offset[inner]) == pytest.approx(-shift, abs=0.3)
    assert np.median(motion.confidence[inner]) > 0.8
    assert motion.confidence[:, :shift].mean() < motion.confidence[inner].mean()  # wrapped-in columns


def test_a_shot_cut_resets_the_colour_memory(colorizer, photos):
    shot_a, shot_b = pan(photos[0], 6), pan(photos[1], 4)
    clip = shot_a + shot_b
    temporal = FrameColorizer(colorizer, temporal=TemporalSettings())
    per_frame = FrameColorizer(colorizer, temporal=None)
    # uneven batches: the memory must carry across calls, not just within a batch
    carried = temporal(clip[:4]) + temporal(clip[4:])
    fresh = per_frame(clip)
    assert temporal.cuts == 1
    assert np.array_equal(carried[0], fresh[0])  # nothing to carry into the first frame
    assert not np.array_equal(carried[3], fresh[3])  # within the shot, colour is carried
    assert np.array_equal(carried[6], fresh[6])  # the cut's first frame is colorized afresh
    assert not np.array_equal(carried[7], fresh[7])  # and the new shot builds its own memory


def _lightness(frame: np.ndarray) -> torch.Tensor:
    from colorgan.color import lightness

    return lightness(torch.from_numpy(np.require(frame, requirements="CW")).permute(2, 0, 1)[None])  # (1, 1, H, W)


@pytest.mark.parametrize("motion", ["pan", "zoom", "fade"])
def test_histogram_cut_detector_ignores_camera_moves_and_fades_and_fires_between_shots(photos, motion):
    memory = ColorMemory()
    clip = list(synthetic_clip(photos[0], "pan" if motion == "fade" else motion, (96, 72), 12))
    if motion == "fade":  # to 30% brightness in 12 frames: every step moves the whole histogram
        clip = [(frame * (1 - 0.7 * i / 12)).astype(np.uint8) for i, frame in enumerate(clip)]
    for frame in clip:
        memory.track(_lightness(frame))
    assert memory.cuts == 0
    assert memory.track(_lightness(pan(photos[1], 1, size=(96, 72))[0])) is None
    assert memory.cuts == 1
    assert memory.track(_lightness(pan(photos[1], 2, size=(96, 72))[1])) is not None  # the new shot is followed


GRADIO_VIDEOS = Path(__import__("gradio").__file__).parent / "media_assets" / "videos"  # installed with the app extra
OPENCV_SAMPLES = Path("/usr/share/doc/opencv-doc/examples/data")  # Debian's opencv-doc


def shot_starts(frames, render_size: int = 224) -> list[int]:
    """The frames the colour memory treats as the start of a new shot (after the first), tracked at render size."""
    import torch.nn.functional as F

    from colorgan.pipeline import render_shape

    memory, starts = ColorMemory(), []
    for index, frame in enumerate(frames):
        l_star = _lightness(frame)
        width, height = render_shape(l_star.shape[-1], l_star.shape[-2], render_size)
        l_star = F.interpolate(l_star, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
        if memory.track(l_star) is None and index > 0:
            starts.append(index)
    assert memory.cuts == len(starts)
    return starts


def real_clip(path: Path, limit: int | None = None) -> list[np.ndarray]:
    if not path.is_file():
        pytest.skip(f"{path} is not installed")
    return list(read_frames(path, max_frames=limit, max_side=480))


def test_real_clips_without_cuts_report_none_even_through_a_fade_to_black():
    # a.mp4 ends fading a flat gray card to black: each step jumps whole histogram bins (distance 2.0)
    assert shot_starts(real_clip(GRADIO_VIDEOS / "a.mp4")) == []
    assert shot_starts(real_clip(GRADIO_VIDEOS / "b.mp4")) == []


def test_real_clips_joined_have_exactly_their_one_cut():
    first, second = real_clip(GRADIO_VIDEOS / "b.mp4", 40), real_clip(GRADIO_VIDEOS / "a.mp4")[150:]  # its fade
    assert shot_starts(first + second) == [40]


def test_an_animated_trailers_cuts_are_found_and_nothing_else():
    # Megamind.avi (OpenCV's sample): black, then 4 shots of a dialogue starting at frames 1, 98, 154 and 200
    assert shot_starts(real_clip(OPENCV_SAMPLES / "Megamind.avi")) == [1, 98, 154, 200]


@pytest.fixture(scope="module")
def starter():
    """The bundled starter model: trained, so its per-frame colours really flicker (the random tiny one's barely do)."""
    from colorgan import Colorizer

    return Colorizer.from_pretrained(device="cpu")


@pytest.mark.parametrize("motion", ["pan", "zoom"])
def test_temporal_colour_flickers_at_most_half_as_much(starter, photos, motion):
    clip = list(synthetic_clip(photos[0], motion, (128, 96), 12))
    per_frame = flicker(FrameColorizer(starter, temporal=None)(clip))
    temporal = flicker(FrameColorizer(starter)(clip))
    print(f"\n{motion}: flicker {per_frame:.2f} per frame, {temporal:.2f} temporal")
    assert np.isfinite(per_frame) and np.isfinite(temporal)
    assert temporal <= 0.5 * per_frame


def test_flicker_metric(photos):
    still = [np.full((48, 64, 3), (180, 90, 60), np.uint8)] * 4
    assert flicker(still) == pytest.approx(0.0, abs=1e-6)
    # a real pan of a colour photo: its colour moves with the scene, so it barely counts as flicker ...
    moving = pan(photos[0], 8, size=(96, 72))
    steady = flicker(moving)
    # ... while the same frames with colour jumping from frame to frame flicker strongly
    shift = np.array([1, -1, 0])  # toward red / toward green, alternately
    jumping = [np.clip(f.astype(int) + (18 if i % 2 else -18) * shift, 0, 255).astype(np.uint8) for i, f in enumerate(moving)]
    assert steady < 2.0 and flicker(jumping) > 3 * steady + 5


@pytest.mark.parametrize("steps", [4, 40])
def test_hints_are_carried_along_the_motion(steps):
    """A 3x3 hint patch follows a slow sub-pixel drift for many frames without blurring away."""
    import cv2

    texture = textured(96, 128, seed=1)
    hint_ab, mask = torch.zeros(1, 2, 96, 128), torch.zeros(1, 1, 96, 128)
    hint_ab[..., 40:43, 30:33] = torch.tensor([0.5, -0.3]).view(1, 2, 1, 1)
    mask[..., 40:43, 30:33] = 1.0
    memory = ColorMemory()
    carried = CarriedHints(hint_ab, mask)
    velocity = np.array([0.7, 0.3]) * 40 / steps  # (x, y) px per frame: 28 px right, 12 down in all
    for step in range(steps + 1):
        shift = np.float32([[1, 0, velocity[0] * step], [0, 1, velocity[1] * step]])
        frame = cv2.warpAffine(texture, shift, (128, 96), borderMode=cv2.BORDER_REFLECT)
        motion = memory.track(torch.from_numpy(frame * 100)[None, None])
        if motion is not None:
            carried.follow(motion)
    carried_ab, carried_mask = carried.tensors()
    rows, cols = np.nonzero(carried_mask[0, 0].numpy())
    assert 6 <= rows.size <= 12  # still about the 3x3 patch it was
    # where the patch's centre went: (31, 41) + (28, 12), within 2 px after up to 40 frames of flow
    assert rows.mean() == pytest.approx(41 + 12, abs=2.0) and cols.mean() == pytest.approx(31 + 28, abs=2.0)
    assert torch.allclose(carried_ab[0, :, rows, cols], torch.tensor([[0.5], [-0.3]]))


def test_hints_given_for_a_later_frame_follow_the_clip(colorizer, photos, tmp_path):
    source, output = tmp_path / "clip.mp4", tmp_path / "colour.mp4"
    encode_clip(pan(photos[0], 10), source, 12)
    colorize_video(colorizer, source, output, hints=[(32, 24, (200, 30, 30))], hint_frame=3, progress=False)
    assert probe(output).frames == 10
    frame_colorizer = FrameColorizer(colorizer, hints=[(32, 24, (200, 30, 30))], hint_frame=3)
    frames = list(read_frames(source))
    frame_colorizer(frames[:3])
    assert frame_colorizer.carried_hints is None  # nothing before the hint frame
    carried = frame_colorizer(frames[3:])
    fresh = FrameColorizer(colorizer, hints=[(32, 24, (200, 30, 30))], hint_frame=0, temporal=None)(frames[3:4])
    assert np.array_equal(carried[0], fresh[0])  # the hint frame starts afresh: hints are not faded in
    assert frame_colorizer.carried_hints is not None and frame_colorizer.carried_hints.tensors()[1].sum() > 0
    with pytest.raises(VideoError, match="hints are for frame 40 but the video has 10 frames"):
        colorize_video(
            colorizer, source, tmp_path / "late.mp4", hints=[(1, 1, (0, 0, 0))], hint_frame=40, progress=False
        )
    assert not (tmp_path / "late.mp4").exists()


def test_timestamps_stamped_in_decoding_order_are_put_right():
    """AVI with packed B-frames stamps display-ordered frames 1, 2, 3, 5, 4, ... (seen in OpenCV's Megamind.avi)."""
    from types import SimpleNamespace

    from colorgan.video import _decoded_frames

    video, audio = SimpleNamespace(width=2, height=2, time_base=None), object()  # each frame is checked against the header
    stamps = [1, 2, 3, 5, 4, 6, 8, 7, 9, None, 11]
    frames = [
        SimpleNamespace(width=2, height=2, pts=pts, to_ndarray=lambda format, i=i: np.full((2, 2, 3), i, np.uint8))
        for i, pts in enumerate(stamps)
    ]
    packets = [SimpleNamespace(stream=video, decode=lambda f=f: [f]) for f in frames]
    packets.insert(3, SimpleNamespace(stream=audio))
    copied = []
    container = SimpleNamespace(demux=lambda *streams: iter(packets))
    writer = SimpleNamespace(copy=copied.append)
    out = list(_decoded_frames(container, video, [audio], writer, "clip.avi"))
    assert [int(rgb[0, 0, 0]) for rgb, _ in out] == list(range(len(stamps)))  # frames keep their order
    assert [pts for _, pts in out] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 11, None]  # stamps sorted; the missing one last
    assert len(copied) == 1


def test_eval_video_cli_scores_photo_pans_and_clips(tiny_model_dir, photos_dir, tmp_path, capsys):
    import json
    import shutil

    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(val_photo_paths(photos_dir, 1)[0], folder)
    clip = tmp_path / "clip.mp4"
    encode_clip(pan(Image.open(val_photo_paths(photos_dir, 1)[0]), 6), clip, 12)
    summary = tmp_path / "scores.json"
    arguments = ["eval-video", str(folder), str(clip), "--model", str(tiny_model_dir), "--frames", "5"]
    assert main([*arguments, "--size", "64x48", "--summary-json", str(summary)]) == 0
    table = capsys.readouterr().out
    assert "| clip.mp4 | 6 |" in table and " pan | 5 |" in table and " zoom | 5 |" in table and "**mean**" in table
    scores = json.loads(summary.read_text())
    assert len(scores) == 3
    for row in scores:
        assert all(np.isfinite(row[key]) for key in ("flicker_per_frame", "flicker_temporal", "psnr_temporal"))
    assert main(["eval-video", str(tmp_path / "missing.mp4"), "--model", str(tiny_model_dir)]) == 2
    assert_one_line(capsys.readouterr().err)


def test_a_painted_stroke_reaches_the_network_as_for_a_photo(colorizer, photos):
    # one path for photos and video: the stroke (a 30x10 band, 10% of the 64x48 frame) reaches the
    # generator thinned by `hints_as_trained`, and is propagated whole
    from PIL import ImageDraw

    from colorgan.hints import hints_as_trained
    from colorgan.imaging import decode

    frame = pan(photos[0], 1)[0]
    layer = Image.new("RGBA", (64, 48), (0, 0, 0, 0))
    ImageDraw.Draw(layer).rectangle([10, 20, 39, 29], fill=(30, 160, 40, 255))
    seen = []
    handle = colorizer.generator.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    try:
        (hinted,) = FrameColorizer(colorizer, hints=layer, temporal=None)([frame])
        (plain,) = FrameColorizer(colorizer, temporal=None)([frame])
    finally:
        handle.remove()
    item = decode(Image.fromarray(frame))
    with torch.inference_mode():
        l_full = colorizer.full_resolution_lightness(item)
        dense = colorizer.generator_input(item, l_full, layer, colorizer.default_render_size)
    assert torch.equal(seen[0], hints_as_trained(dense)) and 0 < seen[0][0, 3].sum() < dense[0, 3].sum()
    stroke = hinted[20:30, 10:40].astype(int)  # the whole stroke takes its green, not just the points
    assert (stroke[..., 1] > stroke[..., 0]).all() and (stroke[..., 1] > stroke[..., 2]).all()
    assert not np.array_equal(hinted, plain)
