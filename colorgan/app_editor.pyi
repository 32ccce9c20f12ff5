"""The web app's photo editor: Gradio's `ImageEditor` that never decodes an upload before colorgan's size check.

`gr.ImageEditor` decodes the photo, every painted layer and the composite in full (and converts
each) before the app's function runs: up to Pillow's own 179 MP bomb limit, so six concurrent
169 MP uploads took the app to 4.3 GB before `APP_MAX_PIXELS` could refuse them. This editor reads
only each file's header (`colorgan.imaging.check_image_header`), refuses oversized ones at once, and
hands the app file paths; the composite, which the app does not use, is never read.
"""
from __future__ import annotations

from pathlib import Path

import gradio as gr
from gradio.data_classes import FileData

from .errors import one_line
from .imaging import ImageError, check_image_header
from .limits import APP_MAX_PIXELS

from gradio.events import Dependency

class HeaderCheckedImageEditor(gr.ImageEditor):
    """`gr.ImageEditor` whose value holds file paths, each checked from its header only.

    Args:
        max_pixels: refuse a photo or layer with more pixels than this.
        *args, **kwargs: those of `gr.ImageEditor`; `type` is always "filepath".
    """

    # Gradio serves a subclass as a custom component with its own frontend files; a template
    # component (as gr.ClearButton is of gr.Button) reuses its parent's frontend instead.
    is_template = True

    def __init__(self, *args, max_pixels: int = APP_MAX_PIXELS, **kwargs):
        kwargs["type"] = "filepath"
        super().__init__(*args, **kwargs)
        self.max_pixels = max_pixels

    def get_config(self, cls: type | None = None) -> dict:
        # Gradio sends the browser the attributes named in `cls.__init__`'s signature; ours is
        # (*args, max_pixels, **kwargs), so without this the label, elem_id, brush... never arrive.
        return super().get_config(cls or gr.ImageEditor)

    def _checked_path(self, file: FileData | bytes | None, what: str) -> str | None:
        if file is None:
            return None
        if not isinstance(file, FileData):  # a blob the browser streamed: keep it as a file, undecoded
            path = Path(self.GRADIO_CACHE) / "editor-blobs"
            path.mkdir(parents=True, exist_ok=True)
            import tempfile

            descriptor, name = tempfile.mkstemp(dir=path, suffix=".png")
            with open(descriptor, "wb") as handle:
                handle.write(bytes(file))
            file = FileData(path=name, orig_name=f"{what}.png")
        try:
            check_image_header(file.path, max_pixels=self.max_pixels)
        except ImageError as error:  # named by the upload's own name, never the server's path
            shown = Path(file.orig_name or file.path).name
            raise gr.Error(one_line(str(error).replace(file.path, shown)), print_exception=False) from None
        return file.path

    def preprocess(self, payload):
        """The editor's value as {"background": path, "layers": [paths], "composite": None}, sizes checked."""
        if payload is None:
            return None
        data = payload
        if payload.id is not None:
            data = self.blob_storage.pop(payload.id, None)
        if data is None:
            return {"background": None, "layers": [], "composite": None}
        background = self._checked_path(data.background, "photo")
        layers = [self._checked_path(layer, "layer") for layer in (data.layers or [])]
        return {"background": background, "layers": [layer for layer in layers if layer], "composite": None}
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component