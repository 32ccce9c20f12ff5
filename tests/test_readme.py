"""Every code block of the README works as written, from the repository's folder of a fresh clone.

Blocks run in order, each in a fresh process, in a scratch folder that holds what a clone holds
(`examples/` copied, `colorgan/` linked for the bundled starter model). A block preceded by
`<!-- readme-test: KIND -->` needs what a test cannot have, and is checked instead:

- install: each `pip install -e ".[EXTRA]"` names an extra of pyproject.toml (.ci/run runs the install);
- server, hub, training, cluster (GPUs or several machines): Python parses; every `colorgan`,
  `accelerate launch ... -m colorgan`, `python app.py` and `train_accelerate.py` command line parses
  with that program's own argument parser.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import REPO

README = REPO / "README.md"
BLOCK = re.compile(r"(?:<!-- readme-test: (?P<kind>[a-z]+) -->\n)?```(?P<language>\w+)\n(?P<code>.*?)```", re.S)
KINDS = ("install", "server", "hub", "training", "cluster")


def readme_blocks() -> list[tuple[str | None, str, str]]:
    """(kind or None, language, code) of each python and bash block, in order."""
    blocks = [(m["kind"], m["language"], m["code"]) for m in BLOCK.finditer(README.read_text(encoding="utf-8"))]
    return [block for block in blocks if block[1] in ("python", "bash")]


def command_lines(code: str) -> list[list[str]]:
    """The block's shell commands, continuation lines joined, comments and `VAR=value` prefixes dropped."""
    commands = []
    for line in code.replace("\\\n", " ").splitlines():
        for part in re.split(r"&&|;", line):
            words = shlex.split(part, comments=True)
            while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
                words.pop(0)
            if words:
                commands.append(words)
    return commands


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), REPO / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_without_running(kind: str, language: str, code: str) -> None:
    if language == "python":
        compile(code, "README.md", "exec")
        return
    from colorgan.cli import build_parser

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for words in command_lines(code):
        if words[:2] == ["pip", "install"]:
            assert all(extra in extras for extra in re.findall(r"\[(\w+)\]", " ".join(words))), words
        elif words[0] == "colorgan":
            build_parser().parse_args(words[1:])
        elif words[:2] == ["accelerate", "launch"] and "colorgan" in words:  # accelerate launch [...] -m colorgan ARGS
            assert words[words.index("colorgan") - 1] in ("-m", "--module"), words
            build_parser().parse_args(words[words.index("colorgan") + 1 :])
        elif "app.py" in words:
            load_script("app.py").parse_args(words[words.index("app.py") + 1 :])
        elif "train_accelerate.py" in words:
            load_script("train_accelerate.py").build_parser().parse_args(words[words.index("train_accelerate.py") + 1 :])


def test_readme_blocks_are_known_kinds():
    blocks = readme_blocks()
    assert blocks and all(kind in (None, *KINDS) for kind, _, _ in blocks)
    assert any(kind is None for kind, _, _ in blocks), "no block of the README runs"
    ci = (REPO / ".ci" / "run").read_text()
    assert 'pip install -q -e ".[dev]"' in ci and "python -m pytest" in ci  # the install the README describes


def test_blocks_that_cannot_run_here_parse():
    for kind, language, code in readme_blocks():
        if kind is not None:
            check_without_running(kind, language, code)


@pytest.mark.slow
def test_readme_blocks_run_as_written(tmp_path):
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    (tmp_path / "colorgan").symlink_to(REPO / "colorgan")  # the bundled starter model, at the path a clone has
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO),  # this checkout's code, installed or not
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # its `colorgan` command
        HF_HUB_OFFLINE="1",
    )
    for index, (kind, language, code) in enumerate(readme_blocks()):
        if kind is not None:
            continue
        command = [sys.executable, "-c", code] if language == "python" else ["bash", "-euo", "pipefail", "-c", code]
        result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"README block {index} ({language}) failed:\n{code}\n{result.stderr[-3000:]}"
    assert (tmp_path / "pan_color.mp4").is_file() and (tmp_path / "eval" / "report.md").is_file()
