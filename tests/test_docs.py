"""Runs the documentation as written: every page's Python blocks, in order.

The contract every page follows (docs/development.md states it for
writers):

- Pages: `README.md` and every `docs/**/*.md`.
- Every block fenced ```` ```python ```` at the start of a line runs. A
  page's blocks, concatenated in order, are one script, run in a fresh
  Python process: the repository first on `sys.path`, a temporary working
  directory, `KERAS_BACKEND=tensorflow`, matplotlib's `Agg` backend.
- A block fenced ```` ```python notest ```` is skipped (the page says why,
  e.g. it needs a second machine or a file the reader has).
- A ```` ```text ```` block right after a Python block (nothing but blank
  lines between) is what that block prints on stdout, compared line by line
  (trailing spaces and the blank lines around it ignored). `...` stands for
  any text, on one line or across several: write it where the output varies
  from run to run or machine to machine (times, the last digits of a
  trained model's metrics). Show other text in ```` ``` ```` or
  ```` ```console ```` blocks.

A traceback names the page and its line: line N of the script is line N of
the page.
"""

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = sorted(
    [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")],
    key=lambda path: str(path.relative_to(ROOT)),
)
FENCE = re.compile(r"^```(\S*)(?:[ \t]+(\S+))?[ \t]*$")
MARKER = "\x1edocs-block-output"
TIMEOUT_SECONDS = 600


def blocks(text):
    """The fenced blocks of a page: `(language, option, first_line, lines)`.

    `first_line` is the 0-based index of the opening fence.
    """
    found, lines, index = [], text.splitlines(), 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if match is None or not match.group(1):
            index += 1
            continue
        end = index + 1
        while end < len(lines) and lines[end].rstrip() != "```":
            end += 1
        found.append((*match.groups(), index, lines[index + 1 : end]))
        index = end + 1
    return found


def script_and_outputs(text):
    """The page's script, and the output shown after each of its blocks.

    The script has the page's line numbers: each block's code sits on its
    own lines, and each opening fence becomes a line that marks, on
    stdout, where that block's output begins.
    """
    found = blocks(text)
    script = [""] * len(text.splitlines())
    expected = []
    for position, (language, option, first, code) in enumerate(found):
        if language != "python" or option == "notest":
            continue
        script[first] = f"print({MARKER!r}, flush=True)"
        script[first + 1 : first + 1 + len(code)] = code
        following = found[position + 1] if position + 1 < len(found) else None
        last = first + len(code) + 1
        shown = None
        if (
            following is not None
            and following[0] == "text"
            and not "".join(text.splitlines()[last + 1 : following[2]]).strip()
        ):
            shown = "\n".join(following[3])
        expected.append(shown)
    return "\n".join(script) + "\n", expected


def matches(expected, output):
    """Whether `output` is what a page shows, `...` matching any text."""
    expected, output = (_normalized(text) for text in (expected, output))
    pattern = ".*?".join(re.escape(part) for part in expected.split("..."))
    return re.fullmatch(pattern, output, re.DOTALL) is not None


def _normalized(text):
    return "\n".join(line.rstrip() for line in text.splitlines()).strip("\n")


def _page_id(path):
    return str(path.relative_to(ROOT))


RUNNABLE = [
    path
    for path in PAGES
    if any(
        language == "python" and option != "notest"
        for language, option, *_ in blocks(path.read_text(encoding="utf-8"))
    )
]


@pytest.mark.slow
@pytest.mark.parametrize("page", RUNNABLE, ids=_page_id)
def test_page_runs_as_written(page, tmp_path):
    script, expected = script_and_outputs(page.read_text(encoding="utf-8"))
    path = tmp_path / f"{page.name}.py"
    path.write_text(script, encoding="utf-8")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
        "KERAS_BACKEND": "tensorflow",
        "MPLBACKEND": "Agg",
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    done = subprocess.run(
        [sys.executable, str(path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
    )
    assert done.returncode == 0, (
        f"{_page_id(page)} failed (line numbers are the page's):\n"
        f"{done.stderr[-4000:]}"
    )
    outputs = done.stdout.split(MARKER + "\n")[1:]
    assert len(outputs) == len(expected)
    for number, (shown, output) in enumerate(
        zip(expected, outputs, strict=True), start=1
    ):
        if shown is not None:
            assert matches(shown, output), (
                f"{_page_id(page)}, Python block {number}: the page shows\n"
                f"{shown}\nbut the block printed\n{output}"
            )


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_page_fences_are_ones_the_runner_knows(page):
    for language, option, first, _ in blocks(page.read_text("utf-8")):
        if language in ("py", "python3", "pycon") or (
            language == "python" and option not in (None, "notest")
        ):
            raise AssertionError(
                f"{_page_id(page)}:{first + 1}: fence '{language} "
                f"{option or ''}' would not run; write ```python or "
                "```python notest"
            )


def test_output_matching_takes_ellipsis_for_any_text():
    assert matches("loss 0.2...\ndone", "loss 0.2741\ndone\n")
    assert matches("first\n...\nlast", "first\na\nb\nlast")
    assert not matches("loss 0.2...", "loss 0.3741")
    assert not matches("a\nb", "a\nb\nc")


def test_script_keeps_the_page_line_numbers():
    page = "# T\n\n```python\nx = 1\n```\n\n```text\nshown\n```\n"
    script, expected = script_and_outputs(page)
    assert script.splitlines()[3] == "x = 1"
    assert expected == ["shown"]
    skipped = "```python notest\nboom()\n```\n"
    assert script_and_outputs(skipped) == ("\n\n\n", [])


def test_benchmarks_page_is_what_the_results_give():
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "benchmarks_table.py"),
            "--check",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
