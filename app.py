"""colorgan web app: colorize black-and-white photos, optionally steered by painted colour hints.

    python app.py [--model PATH_OR_REPO_ID]

The model comes from `--model`, else the `COLORGAN_MODEL` environment variable (a Space
variable), else the starter checkpoint bundled with the package. On a CPU the generator runs with
the fastest backend that loads (ONNX Runtime int8, then fp32, then torch); the start-up log says
which. Gradio's own variables (`GRADIO_SERVER_NAME`, `GRADIO_SERVER_PORT`, ...) apply as usual.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import gradio as gr

from colorgan import CheckpointError, Colorizer
from colorgan.app_editor import HeaderCheckedImageEditor
from colorgan.imaging import remove_partial_files_on_signals, too_many_pixels
from colorgan.limits import (
    APP_MAX_FILE_SIZE,
    APP_MAX_PIXELS,
    APP_MAX_VIDEO_SECONDS,
    APP_MAX_VIDEO_SIDES,
    APP_RENDER_SIZE,
    APP_SATURATION,
)
from colorgan.threads import default_threads, set_threads
from colorgan.webapp import (
    before_and_after,
    colorize_clip,
    colorize_photo,
    default_render_size,
    load_fastest_colorizer,
    save_png,
    split_editor_value,
)

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
WORKERS = 2  # one colorization per vCPU of a basic Space; the rest wait in the queue
QUEUE_SIZE = 64  # waiting requests beyond this are turned away ("queue full") instead of piling up
HINT_COLORS = ["#5b8fd1", "#4f8a3c", "#e2b08f", "#c8312f", "#e8c547", "#7a5233", "#2f6f8f", "#7d4fa0"]
# the brush's radius in the photo's pixels; Gradio's "auto" (25) painted 50 px dots, wider than a face in a group photo
BRUSH_RADIUS = 6

# Runs once in the browser when the page loads. Gradio's editor closes its colour palette (and the
# brush size slider) on a mousedown outside it; a pick of a colour and Escape send one, so the palette
# no longer covers the photo where the next click goes. A file the browser cannot open as an image
# leaves the editor empty without a word, and one over the pixel limit would hang the page while the
# editor decodes it: such a file never reaches the editor, its name (and size) go to the hidden
# #rejected-upload box, whose event answers with the error.
EDITOR_JS = """
() => {
    const closeEditorPopups = () => document.body.dispatchEvent(new MouseEvent("mousedown", { bubbles: true }));
    document.addEventListener("click", (event) => {  // seen on the way down, closed once the pick is made
        if (event.target.closest("#photo menu.swatch button.color")) setTimeout(closeEditorPopups, 0);
    }, true);
    document.addEventListener("keydown", (event) => {
        if (event.key === "Escape") closeEditorPopups();
    });
    // The editor decodes what it is given on the page's one thread, and a 48 MP scan keeps it busy for
    // half a minute, the error included. So an upload reaches the editor only after the browser has
    // opened it aside (createImageBitmap, off the main thread) and found it within the limit.
    const refuse = (file, size) => {
        const box = document.querySelector("#rejected-upload textarea");
        // a new value each time (the clock), so the same file is refused again
        box.value = `${file.name}\n${size}\n${Date.now()}`;
        box.dispatchEvent(new Event("input", { bubbles: true }));
    };
    const checked = new WeakSet();  // the events this script passes on to the editor
    const holdUntilOpened = (event, file, passOn) => {
        if (!file || checked.has(event)) return;
        event.stopImmediatePropagation();
        event.preventDefault();
        const refused = (size) => {
            refuse(file, size);
            if (event.target.type === "file") event.target.value = "";  // so choosing it again is seen
        };
        createImageBitmap(file).then((bitmap) => {
            const [width, height] = [bitmap.width, bitmap.height];
            bitmap.close();
            if (width * height > MAX_PIXELS) refused(`${width}x${height}`);
            else passOn();
        }, () => refused(""));
    };
    const passOn = (target, newEvent) => {
        checked.add(newEvent);
        target.dispatchEvent(newEvent);
    };
    document.addEventListener("change", (event) => {
        const input = event.target;
        if (!input.matches("#photo input[type=file]")) return;
        holdUntilOpened(event, input.files[0], () => passOn(input, new Event("change", { bubbles: true })));
    }, true);
    document.addEventListener("drop", (event) => {
        const target = event.target;
        const file = event.dataTransfer && event.dataTransfer.files[0];
        if (!target.closest || !target.closest("#photo")) return;
        holdUntilOpened(event, file, () => {
            const files = new DataTransfer();  // the dropped one is emptied once its event is over
            files.items.add(file);
            passOn(target, new DragEvent("drop", { bubbles: true, cancelable: true, dataTransfer: files }));
        });
    }, true);
}
""".replace("MAX_PIXELS", str(APP_MAX_PIXELS))
LAUNCH_OPTIONS = {"max_file_size": APP_MAX_FILE_SIZE, "theme": gr.themes.Soft(), "js": EDITOR_JS}

INTRO = """# colorgan: colorize black-and-white photos
Upload, paste or take a photo (colour photos work too: only their lightness is used) and press
**Colorize**. To steer the colours, pick a colour and paint a few strokes on the photo with the brush
(sky, a shirt, a car...), or click to place a dot: each stroke colours the whole region it sits in, up
to the photo's edges. Only the hue and saturation of your strokes count, the photo keeps its own light
and shade. Without strokes the model chooses all colours itself."""
NOT_AN_IMAGE = "not an image file, or not one this browser can open (JPEG, PNG, WebP, GIF, BMP)"
COMPARE_CHOICES = [("black-and-white → colour", "photo"), ("without your hints → with them", "hints")]

VIDEO_INTRO = f"""Upload a short black-and-white clip (MP4, MOV, MKV, AVI, WebM; at most {APP_MAX_VIDEO_SECONDS} seconds
and {APP_MAX_VIDEO_SIDES[0]}x{APP_MAX_VIDEO_SIDES[1]}, 480p, either way round: this Space has two small CPUs) and press
**Colorize video**. Colour is carried from frame to frame along the motion, so it does not flicker, and starts
afresh at each cut. You get an MP4 of the same size, frame rate and length, with the clip's sound. Longer or
larger films: `colorgan colorize-video` on your own machine."""


@contextmanager
def errors_shown_to_user():
    """Turn the app's one-line input errors into `gr.Error`s the user sees."""
    try:
        yield
    except ValueError as error:  # ImageError, CheckpointError and range errors are ValueErrors
        raise gr.Error(str(error), print_exception=False) from None


def stating_app_limits(function):
    """Fill the app's limits into an endpoint's docstring, which Gradio shows as its API documentation."""
    function.__doc__ = function.__doc__.format(
        saturation=APP_SATURATION.describe(),
        render_size=APP_RENDER_SIZE.describe(),
        seconds=APP_MAX_VIDEO_SECONDS,
        sides="x".join(map(str, APP_MAX_VIDEO_SIDES)),
    )
    return function


def settings_sliders(colorizer: Colorizer, render_size_info: str | None = None) -> tuple[gr.Slider, gr.Slider]:
    """The saturation and render-size sliders both tabs share, within the app's own limits."""
    saturation = gr.Slider(APP_SATURATION.low, APP_SATURATION.high, value=1.0, step=0.05, label="Saturation")
    render_size = gr.Slider(
        APP_RENDER_SIZE.low,
        APP_RENDER_SIZE.high,
        value=default_render_size(colorizer),
        step=64,
        label="Render resolution",
        info=render_size_info,
    )
    return saturation, render_size


def build_demo(colorizer: Colorizer) -> gr.Blocks:
    """The app's UI and its `/colorize` API endpoint around an already loaded model.

    Args:
        colorizer: the model every request uses (loaded once, shared by the workers).
    """

    limits = {"concurrency_limit": WORKERS, "concurrency_id": "colorizer"}  # photos and videos share the workers
    # gradio caches clicked examples in ./.gradio unless told otherwise: keep the working directory clean
    os.environ.setdefault("GRADIO_EXAMPLES_CACHE", str(Path(tempfile.gettempdir()) / "colorgan-examples-cache"))
    with gr.Blocks(title="colorgan", delete_cache=(1800, 3600)) as demo:
        gr.Markdown(INTRO)
        with gr.Tab("Photo", id="photo-tab"):
            with gr.Row():
                with gr.Column():
                    editor = HeaderCheckedImageEditor(  # hands over paths: no decoding before the size check
                        label="Photo (paint colour hints with the brush)",
                        image_mode="RGBA",  # keeps the strokes' transparency: unpainted = no hint
                        sources=("upload", "clipboard", "webcam"),
                        transforms=(),
                        layers=False,
                        brush=gr.Brush(colors=HINT_COLORS, color_mode="defaults", default_size=BRUSH_RADIUS),
                        height=520,
                        elem_id="photo",
                    )
                    saturation, render_size = settings_sliders(
                        colorizer,
                        render_size_info="Long side at which the model runs: higher is more detailed but slower."
                        " The result always has the photo's full resolution.",
                    )
                    compare = gr.Radio(
                        COMPARE_CHOICES,
                        value="photo",
                        label="Before / after compares",
                        info="Pick 'without your hints' to see what your strokes changed.",
                        elem_id="compare",
                    )
                    colorize_button = gr.Button("Colorize", variant="primary", elem_id="colorize")
                with gr.Column():
                    slider = gr.ImageSlider(
                        label="Before / after",
                        type="pil",
                        buttons=["fullscreen"],  # no download here: the PNG below is the full-size one
                        interactive=False,
                        elem_id="before-after",
                    )
                    download = gr.File(label="Full-resolution colour PNG", interactive=False, elem_id="download")
            rejected_upload = gr.Textbox(visible="hidden", elem_id="rejected-upload")  # filled by EDITOR_JS
            # the API's own inputs and output: files, so any format and bit depth arrives untouched
            api_image = gr.File(label="image", visible=False)
            api_hints = gr.File(label="hints", visible=False)
            api_result = gr.File(label="colour PNG", visible=False)

            def colorize_in_editor(editor_value: dict | None, saturation: float, render_size: int, compare: str = "photo"):
                with errors_shown_to_user():
                    photo, hint_layer = split_editor_value(editor_value)
                    colorized = colorize_photo(colorizer, photo, hint_layer, saturation=saturation, render_size=render_size)
                    before = None
                    if compare == "hints" and hint_layer is not None:
                        before = colorize_photo(colorizer, photo, None, saturation=saturation, render_size=render_size)
                return before_and_after(photo, colorized, before), save_png(colorized, download.GRADIO_CACHE)

            def compare_again(editor_value: dict | None, saturation: float, render_size: int, compare: str, shown):
                if not shown or shown[1] is None:  # nothing colorized yet: the choice applies at the next Colorize
                    return gr.skip(), gr.skip()
                return colorize_in_editor(editor_value, saturation, render_size, compare)

            def refuse_upload(rejected: str):
                name, size = (rejected.split("\n") + [""])[:2] if rejected else ("the file", "")
                if size:  # "WxH" from the browser's decode
                    width, height = (int(side) for side in size.split("x"))
                    raise gr.Error(too_many_pixels(name, width, height, APP_MAX_PIXELS), print_exception=False)
                raise gr.Error(f"{name}: {NOT_AN_IMAGE}", print_exception=False)

            @stating_app_limits
            def colorize(image: str, hints: str | None = None, saturation: float = 1.0, render_size: int | None = None) -> str:
                """Colorize a photo; returns the colour PNG at the photo's full resolution.

                Args:
                    image: the photo (JPEG, PNG incl. 16-bit and alpha, WebP, TIFF, BMP, GIF).
                    hints: optional RGBA PNG of the photo's size, painted where colour is wanted and
                        transparent elsewhere; only the painted colours' chroma is used.
                    saturation: chroma multiplier, {saturation} (0 is gray).
                    render_size: long side in pixels at which the model runs, {render_size} (default: the model's own).
                """
                with errors_shown_to_user():
                    colorized = colorize_photo(colorizer, image, hints, saturation=saturation, render_size=render_size)
                return save_png(colorized, api_result.GRADIO_CACHE, stem=f"{Path(image).stem}_color")

            colorize_button.click(
                colorize_in_editor,
                inputs=[editor, saturation, render_size, compare],
                outputs=[slider, download],
                api_name="colorize_editor",
                api_visibility="undocumented",
                **limits,
            )
            compare.change(  # the slider shows the other comparison at once, without a new Colorize
                compare_again,
                inputs=[editor, saturation, render_size, compare, slider],
                outputs=[slider, download],
                api_visibility="private",
                **limits,
            )
            rejected_upload.change(refuse_upload, inputs=rejected_upload, outputs=None, api_visibility="private")
            gr.on(  # no UI trigger: an API-only endpoint
                [],
                colorize,
                inputs=[api_image, api_hints, saturation, render_size],
                outputs=api_result,
                api_name="colorize",
                **limits,
            )
            gr.Examples(
                examples=[[str(path), 1.0, default_render_size(colorizer)] for path in sorted(EXAMPLES_DIR.glob("*.jpg"))],
                inputs=[editor, saturation, render_size],
                outputs=[slider, download],
                fn=colorize_in_editor,
                cache_examples=True,
                cache_mode="lazy",
                visible_columns=[0],
                label="Examples (see examples/ATTRIBUTION.tsv for their sources and licences)",
                elem_id="examples",
            )
        with gr.Tab("Video", id="video-tab"):
            build_video_tab(colorizer, limits)
    demo.queue(max_size=QUEUE_SIZE)
    return demo


def build_video_tab(colorizer: Colorizer, limits: dict) -> None:
    """The Video tab and its `/colorize_video` endpoint (inside an open `gr.Tab`)."""
    gr.Markdown(VIDEO_INTRO)
    with gr.Row():
        with gr.Column():
            clip = gr.Video(label="Black-and-white clip", sources=["upload"], elem_id="clip")
            saturation, render_size = settings_sliders(colorizer)
            button = gr.Button("Colorize video", variant="primary", elem_id="colorize-video")
        with gr.Column():
            colorized = gr.Video(
                label="Colorized (MP4 with the original sound)",
                interactive=False,
                buttons=["download"],
                elem_id="colorized-clip",
            )

    @stating_app_limits
    def colorize_video(video: str, saturation: float = 1.0, render_size: int | None = None) -> str:
        """Colorize a short clip; returns an MP4 (H.264) with the clip's frames, frame rate and sound.

        Args:
            video: the clip (MP4, MOV, MKV, AVI, WebM...), at most {seconds} s and {sides}.
            saturation: chroma multiplier, {saturation} (0 is gray).
            render_size: long side in pixels at which the model runs, {render_size} (default: the model's own).
        """
        with errors_shown_to_user():
            return colorize_clip(
                colorizer,
                video,
                colorized.GRADIO_CACHE,
                saturation=saturation,
                render_size=render_size,
                threads=default_threads(workers=WORKERS, video=True),
            )

    button.click(
        colorize_video, inputs=[clip, saturation, render_size], outputs=colorized, api_name="colorize_video", **limits
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        default=os.environ.get("COLORGAN_MODEL") or None,
        help="model folder or Hub repo id (default: $COLORGAN_MODEL, else the bundled starter model)",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    remove_partial_files_on_signals()  # video outputs are written by worker threads, which cannot set it
    # WORKERS requests run at once, each on its share of the cores (colorgan.threads). Set before
    # loading: an ONNX Runtime session takes its thread count from torch's when it is made.
    set_threads(default_threads(workers=WORKERS))
    try:
        colorizer = load_fastest_colorizer(args.model, device=args.device, log=lambda line: print(line, flush=True))
    except (CheckpointError, OSError, ValueError, RuntimeError) as error:
        reason = " ".join(str(error).split())  # one line, whatever the library wrote
        sys.exit(f"error: cannot load the colorgan model: {reason}")
    build_demo(colorizer).launch(**LAUNCH_OPTIONS)


if __name__ == "__main__":
    main()
