"""Measuring colorgan: photos against their ground truth (`photos`), video for flicker (`video`).

Neither module parses arguments; the `colorgan eval` and `colorgan eval-video` commands
(colorgan/cli/evaluate.py) call them.
"""
