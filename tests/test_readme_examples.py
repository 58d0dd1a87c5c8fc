"""Every example in README.md runs as written, against real gunicorn, and answers what README.md shows.

How README.md opts in (nothing to register; a new section is checked as soon as it follows this):

- A fenced ```sh block is a list of commands.  Each line that is not a comment starts a command
  (a trailing backslash continues it); the ``# ...`` lines right under a command are the answer it
  prints.  Commands that start with ``curl`` are run from the repository root with
  ``localhost:8000`` pointed at the live server; the others (set-up, training) are not run here.
- A fenced ```python block is run as a script from the repository root, with ``localhost:8000``
  pointed at the live server; the ``# ...`` lines that end the block are what it prints.
- An inline `curl ...` in the text (e.g. in a table) must run and answer 2xx or 3xx.
- To leave a block out, put ``<!-- readme-test: skip (the reason) -->`` on the line before it.

"Answers what README.md shows" means in kind, not to the digit: the HTTP status class (an answer
with a top-level "error" must be a 4xx/5xx, any other a 2xx/3xx; a shown ``HTTP/1.1 405 ...``
line must match exactly), every key shown must be there, strings (labels, error codes, messages)
and whole numbers (labels, versions, counts) must be equal, numbers with a decimal point need only
be numbers, lists must have the shown length.  ``...`` stands for
anything: more keys, more items, the rest of a string, any value.  An answer that is not JSON is
compared line by line, each shown line a pattern (``...`` = anything) found in order.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from live_server import README_ADMIN_TOKEN, REPO_ROOT  # noqa: E402

README = REPO_ROOT / "README.md"
HOST = "localhost:8000"
SKIP_MARKER = "<!-- readme-test: skip"
SHELL_LANGUAGES = {"sh", "bash", "shell"}
PYTHON_LANGUAGES = {"python", "py"}
STATUS_MARKER = "readme-test-status "


@dataclass(frozen=True)
class Example:
    kind: str  # "curl", "python" or "inline"
    code: str
    shown: str  # the answer README.md shows ("" for none)
    line: int

    @property
    def id(self) -> str:
        first = self.code.strip().splitlines()[0]
        return f"line {self.line}: {first[:70]}"


@dataclass(frozen=True)
class Block:
    language: str
    lines: list[str]
    line: int  # of the first line inside the fence
    skipped: bool


def fenced_blocks(text: str) -> list[Block]:
    blocks, lines = [], text.splitlines()
    index = 0
    while index < len(lines):
        opening = re.match(r"^\s*```(\w*)\s*$", lines[index])
        if not opening:
            index += 1
            continue
        previous = next((line for line in reversed(lines[:index]) if line.strip()), "")
        end = next(i for i in range(index + 1, len(lines)) if lines[i].lstrip().startswith("```"))
        indent = len(lines[index]) - len(lines[index].lstrip())  # a block inside a list item
        body = [line[indent:] if line[:indent].strip() == "" else line for line in lines[index + 1 : end]]
        blocks.append(Block(opening.group(1), body, index + 2, previous.lstrip().startswith(SKIP_MARKER)))
        index = end + 1
    return blocks


def shell_commands(block: Block) -> list[Example]:
    examples, index, lines = [], 0, block.lines
    while index < len(lines):
        line = lines[index]
        if not line.strip() or line.lstrip().startswith("#"):
            index += 1
            continue
        start, command = index, line
        while command.endswith("\\") and index + 1 < len(lines):
            index += 1
            command += "\n" + lines[index]
        index += 1
        shown = []
        while index < len(lines) and lines[index].startswith("#"):
            shown.append(lines[index][2:] if lines[index].startswith("# ") else lines[index][1:])
            index += 1
        if re.match(r"^(\w+=\S*\s+)*curl\s", command):
            examples.append(Example("curl", command, "\n".join(shown), block.line + start))
    return examples


def python_example(block: Block) -> Example:
    shown = []
    for line in reversed(block.lines):
        if not line.startswith("#"):
            break
        shown.insert(0, line[2:] if line.startswith("# ") else line[1:])
    return Example("python", "\n".join(block.lines), "\n".join(shown), block.line)


def inline_commands(text: str) -> list[Example]:
    examples, in_fence = [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        elif not in_fence:
            examples += [Example("inline", command, "", number) for command in re.findall(r"`(curl [^`]+)`", line)]
    return examples


def readme_examples() -> list[Example]:
    text = README.read_text()
    examples = []
    for block in fenced_blocks(text):
        if block.skipped:
            continue
        if block.language in SHELL_LANGUAGES:
            examples += shell_commands(block)
        elif block.language in PYTHON_LANGUAGES:
            examples.append(python_example(block))
    return examples + inline_commands(text)


# --- the shown answers, read leniently: JSON (or Python literals) with "..." for "anything" ---


class Anything:
    """``...`` in a shown answer."""


ANYTHING = Anything()
_TOKEN = re.compile(
    r"""\s*(?:(?P<ellipsis>\.\.\.|…)|(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')"""
    r"""|(?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)|(?P<word>true|false|null|True|False|None)|(?P<punct>[{}\[\]:,]))"""
)


def parse_shown(text: str):
    tokens, position = [], 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match:
            raise ValueError(f"cannot read the shown answer at {text[position:position + 30]!r}")
        tokens.append((match.lastgroup, match.group(match.lastgroup)))
        position = match.end()
        while position < len(text) and text[position].isspace():
            position += 1
    value, rest = _value(tokens, 0)
    if rest != len(tokens):
        raise ValueError(f"unexpected {tokens[rest][1]!r} after the shown answer")
    return value


def _value(tokens, index):
    kind, text = tokens[index]
    if kind == "ellipsis":
        return ANYTHING, index + 1
    if kind == "string":
        return (json.loads(text) if text.startswith('"') else text[1:-1]), index + 1
    if kind == "number":
        return (float(text) if any(c in text for c in ".eE") else int(text)), index + 1
    if kind == "word":
        return {"true": True, "True": True, "false": False, "False": False}.get(text), index + 1
    if text == "[":
        items, index = [], index + 1
        while tokens[index][1] != "]":
            item, index = _value(tokens, index)
            items.append(item)
            index += tokens[index][1] == ","
        return items, index + 1
    if text == "{":
        members, index = {}, index + 1
        while tokens[index][1] != "}":
            if tokens[index][0] == "ellipsis":
                index += 1
            else:
                key, index = _value(tokens, index)
                assert tokens[index][1] == ":", f"expected ':' after {key!r}"
                members[key], index = _value(tokens, index + 1)
            index += tokens[index][1] == ","
        return members, index + 1
    raise ValueError(f"unexpected {text!r}")


def mismatch(shown, actual, where: str = "answer") -> str | None:
    """Why ``actual`` is not of the kind ``shown`` shows; None when it is."""
    if shown is ANYTHING:
        return None
    if isinstance(shown, dict):
        if not isinstance(actual, dict):
            return f"{where}: README shows an object, got {json.dumps(actual)[:200]}"
        for key, value in shown.items():
            if key not in actual:
                return f"{where}: no {key!r} (keys: {sorted(actual)})"
            problem = mismatch(value, actual[key], f"{where}.{key}")
            if problem:
                return problem
        return None
    if isinstance(shown, list):
        if not isinstance(actual, list):
            return f"{where}: README shows a list, got {json.dumps(actual)[:200]}"
        if ANYTHING not in shown:
            if len(actual) != len(shown):
                return f"{where}: README shows {len(shown)} items, got {len(actual)}"
            pairs = list(enumerate(zip(shown, actual)))
        else:  # items before the first "..." from the start, items after the last one from the end
            first, last = shown.index(ANYTHING), len(shown) - 1 - shown[::-1].index(ANYTHING)
            head, tail = shown[:first], shown[last + 1 :]
            if len(actual) < len(head) + len(tail):
                return f"{where}: README shows at least {len(head) + len(tail)} items, got {len(actual)}"
            start = len(actual) - len(tail)
            pairs = list(enumerate(zip(head, actual))) + [
                (start + offset, pair) for offset, pair in enumerate(zip(tail, actual[start:]))
            ]
        for index, (item, value) in pairs:
            problem = mismatch(item, value, f"{where}[{index}]")
            if problem:
                return problem
        return None
    if isinstance(shown, bool) or shown is None:
        return None if actual is shown else f"{where}: README shows {shown!r}, got {actual!r}"
    if isinstance(shown, int):  # labels, versions, counts: exactly
        return None if type(actual) is int and actual == shown else f"{where}: README shows {shown}, got {actual!r}"
    if isinstance(shown, float):  # measurements: only that it is one
        is_number = isinstance(actual, (int, float)) and not isinstance(actual, bool)
        return None if is_number else f"{where}: README shows a number, got {actual!r}"
    if not isinstance(actual, str):
        return f"{where}: README shows a string, got {actual!r}"
    if "..." in shown or "…" in shown:
        return None if re.fullmatch(_pattern(shown), actual) else f"{where}: {actual!r} does not match {shown!r}"
    return None if shown == actual else f"{where}: README shows {shown!r}, got {actual!r}"


def _pattern(shown: str) -> str:
    """A regular expression for a shown text in which "..." stands for anything."""
    return "(?s)" + ".*".join(re.escape(part) for part in re.split(r"\.\.\.|…", shown))


def lines_mismatch(shown: str, actual: str) -> str | None:
    """Each shown line, a pattern with ``...`` for anything, must match an actual line, in order."""
    remaining = actual.splitlines()
    for line in shown.splitlines():
        pattern = _pattern(line.strip())
        found = next((i for i, candidate in enumerate(remaining) if re.fullmatch(pattern, candidate.strip())), None)
        if found is None:
            return f"no line like {line!r} in:\n{actual[:1500]}"
        remaining = remaining[found + 1 :]
    return None


def answer_mismatch(shown: str, status: int, body: str) -> str | None:
    if not shown.strip():
        return None if status < 400 else f"answered {status}: {body[:500]}"
    if shown.lstrip().startswith("HTTP/"):
        status_line, _, rest = shown.strip().partition("\n")
        expected = int(status_line.split()[1])
        if status != expected:
            return f"answered {status}, README shows {status_line!r}: {body[:500]}"
        headers, body = _split_headers(body)
        shown_headers, shown_body = _split_headers(rest, lenient=True)
        problem = lines_mismatch(shown_headers, headers) if shown_headers else None
        return problem or (answer_mismatch(shown_body, status, body) if shown_body.strip() else None)
    if shown.lstrip()[:1] in "{[":
        try:
            actual = json.loads(body)
        except ValueError:
            return f"README shows JSON, got {body[:500]!r}"
        expected = parse_shown(shown)
        shows_error = isinstance(expected, dict) and "error" in expected
        if shows_error != (status >= 400):
            return f"answered {status}, README shows {'an error' if shows_error else 'a success'}: {body[:500]}"
        return mismatch(expected, actual)
    if status >= 400:
        return f"answered {status}: {body[:500]}"
    return lines_mismatch(shown, body)


def _split_headers(text: str, lenient: bool = False) -> tuple[str, str]:
    """``curl -i`` output (or a shown one) -> (header lines, body)."""
    lines = text.replace("\r\n", "\n").split("\n")
    if not lenient and lines and lines[0].startswith("HTTP/"):
        lines = lines[1:]
    for index, line in enumerate(lines):
        if not line.strip() or line.lstrip()[:1] in "{[":
            return "\n".join(lines[:index]), "\n".join(lines[index:]).strip()
    return "\n".join(lines), ""


# --- running them ---


@pytest.fixture(scope="module")
def shell_environment(live_server, tmp_path_factory) -> dict[str, str]:
    """PATH with a curl that also reports each response's status on stderr, and $ADMIN_TOKEN."""
    real_curl = shutil.which("curl")
    if real_curl is None:
        pytest.fail("curl is not installed: README.md's examples need it (apt-get install curl)")
    bin_dir = tmp_path_factory.mktemp("readme-bin")
    shim = bin_dir / "curl"
    shim.write_text(
        "#!/bin/sh\n"
        "# The README's own --write-out wins; otherwise add ours, on stderr.\n"
        'for argument in "$@"; do case "$argument" in -w|--write-out|--write-out=*) '
        f'exec {real_curl} "$@";; esac; done\n'
        f"exec {real_curl} \"$@\" --write-out '%{{stderr}}{STATUS_MARKER}%{{http_code}}\\n'\n"
    )
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "ADMIN_TOKEN": README_ADMIN_TOKEN}


def pointed_at(code: str, server) -> str:
    return code.replace(f"http://{HOST}", server.url).replace(HOST, server.url.removeprefix("http://"))


EXAMPLES = readme_examples()


@pytest.mark.parametrize("example", EXAMPLES, ids=[example.id for example in EXAMPLES])
def test_readme_example(example: Example, live_server, shell_environment):
    code = pointed_at(example.code, live_server)
    if example.kind == "python":
        result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                                timeout=120, env=shell_environment)
        assert result.returncode == 0, f"README.md {example.id} failed:\n{result.stderr[-2000:]}"
        problem = answer_mismatch(example.shown, 200, result.stdout) if example.shown else None
    else:
        result = subprocess.run(["bash", "-c", f"set -o pipefail; {code}"], cwd=REPO_ROOT, capture_output=True,
                                timeout=120, env=shell_environment)
        stdout, stderr = result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace")
        assert result.returncode == 0, f"README.md {example.id} exited {result.returncode}:\n{stderr[-2000:]}"
        statuses = [int(line.removeprefix(STATUS_MARKER)) for line in stderr.splitlines() if line.startswith(STATUS_MARKER)]
        status = statuses[-1] if statuses else int(stdout.split()[1]) if stdout.startswith("HTTP/") else 200
        problem = answer_mismatch(example.shown, status, stdout)
    assert problem is None, f"README.md {example.id}: {problem}\nREADME shows:\n{example.shown}"


def test_every_command_in_the_readme_is_checked():
    """A command in an indented block, or in a fenced block of another language, would never be run:
    the README has to say ```sh / ```python, or opt out with the skip marker."""
    text = README.read_text()
    unchecked = [
        f"line {block.line}: ```{block.language}"
        for block in fenced_blocks(text)
        if not block.skipped and block.language not in SHELL_LANGUAGES | PYTHON_LANGUAGES
        and any(HOST in line or line.lstrip().startswith("curl ") for line in block.lines)
    ]
    in_fence = False
    for number, line in enumerate(text.splitlines(), start=1):
        in_fence = not in_fence if line.lstrip().startswith("```") else in_fence
        if not in_fence and line.startswith("    ") and ("curl " in line or HOST in line):
            unchecked.append(f"line {number}: indented code block")
    assert unchecked == []
    assert any(example.kind == "curl" for example in EXAMPLES)
    assert any(example.kind == "python" for example in EXAMPLES)


@pytest.mark.parametrize(
    "shown, status, body, problem",
    [
        ('{"label": "2", ...}', 200, '{"label": "2", "probability": 0.99}', None),
        ('{"label": "2", ...}', 200, '{"label": "7", "probability": 0.99}', "README shows '2', got '7'"),
        ('{"label": "2"}', 422, '{"error": {"code": "no_ink"}}', "answered 422, README shows a success"),
        ('{"error": {"code": "not_found", "message": "nothing answers ..."}}', 404,
         '{"error": {"code": "not_found", "message": "nothing answers GET /x"}}', None),
        ('{"outputs": [[9.0], [4.0]]}', 200, '{"outputs": [[8.99], [4.01]]}', None),
        ('{"outputs": [[9.0], [4.0]]}', 200, '{"outputs": [[8.99]]}', "shows 2 items, got 1"),
        ('{"outputs": [[1, ..., 9]]}', 200, '{"outputs": [[1, 5, 6, 9]]}', None),
        ('{"version": 1}', 200, '{"version": "1"}', "README shows 1, got '1'"),
        ('{"version": 1}', 200, '{"version": 2}', "README shows 1, got 2"),
        ('{"probability": 0.9}', 200, '{"probability": "high"}', "shows a number"),
        ("[2, 3, 4]", 200, "[2, 3, 4]\n", None),
        ("[2, 3, 4]", 200, "[2, 3, 5]\n", "README shows 4, got 5"),
        ("# HELP serving_requests_total ...\n...", 200, "# HELP serving_requests_total HTTP\nx 1\n", None),
        ("HTTP/1.1 405 METHOD NOT ALLOWED\nAllow: ...POST...", 405,
         "HTTP/1.1 405 METHOD NOT ALLOWED\r\nAllow: OPTIONS, POST\r\n\r\n{}", None),
    ],
)
def test_shown_answers_are_compared_in_kind(shown, status, body, problem):
    found = answer_mismatch(shown, status, body)
    assert (found is None) if problem is None else (found is not None and problem in found), found
