"""How colorgan tells a user what went wrong: one line, whatever the library underneath wrote.

Imports nothing heavy, so the command line's error exit can use it.
"""
from __future__ import annotations


def one_line(error: BaseException | str) -> str:
    """The first line of an error's message with its white space folded, or the error's class name.

    Libraries underneath (ONNX Runtime, the Hub client, torch) write multi-line messages whose first
    line says what failed and whose rest is detail (request ids, stack hints).
    """
    lines = [line for line in str(error).splitlines() if line.strip()]
    if lines:
        return " ".join(lines[0].split())
    return type(error).__name__ if isinstance(error, BaseException) else ""
