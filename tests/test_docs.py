"""The documentation cannot drift from the code.

- Every ```python block of ``docs/**/*.md`` and ``README.md`` runs: each page in a fresh
  interpreter, its blocks in order in one namespace, in a temporary working directory
  (which is also on ``sys.path``). A block whose fence has ``title="pkg/mod.py"`` is
  written to that file instead, and must have been imported by the time the page ends.
  The only way to skip a block is a ``<!-- no-exec: reason -->`` line right before it.
  A block titled ``Output`` right after a Python block must match what that block printed
  (whitespace normalised: long lines may be shown wrapped).
- ``mkdocs build --strict`` succeeds, with every proxy pointed at a closed port so that a
  plugin that fetches anything fails the build: a broken link, a page missing from the
  nav or an API reference to something that no longer exists fails it.
- Every ```yaml block parses (``yaml.safe_load_all``).
- Every ``canaryconf ...`` command line, in shell blocks and in YAML ``command:``
  lists, is accepted by the real argument parser.

Run one page by hand: ``.venv/bin/python tests/test_docs.py docs/quickstart.md``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import doctest
import importlib.util
import io
import linecache
import os
import re
import shlex
import subprocess
import sys
import tempfile
import traceback
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [*sorted(DOCS.rglob("*.md")), ROOT / "README.md"]

PYTHON_LANGS = {"python", "py", "python3"}
SHELL_LANGS = {"bash", "sh", "shell", "console"}
YAML_LANGS = {"yaml", "yml"}
PAGE_TIMEOUT = 120.0
BUILD_TIMEOUT = 240.0
NO_EXEC = re.compile(r"^<!--\s*no-exec:\s*(?P<reason>.*?)\s*-->$")
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
SHELL_OPERATORS = {"|", "||", "&&", ";", ">", ">>", "<", "&", "2>", "2>&1"}
CLOSED_PORT = "http://127.0.0.1:9"
#: A code block titled this right after a Python block shows what that block prints; it
#: must match (``...`` stands for any text, as in doctest).
OUTPUT_TITLE = "Output"
_CHECKER = doctest.OutputChecker()
#: ``...`` stands for any text; runs of whitespace, line breaks included, compare equal, so
#: that a long printed line can be shown wrapped to fit the page.
OUTPUT_OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the first line of code in the page
    lang: str
    code: str
    attrs: dict[str, str] = field(default_factory=dict)
    skip_reason: str | None = None

    @property
    def where(self) -> str:
        return f"{_rel(self.page)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a Markdown page (indented ones too: tabs, admonitions)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        indent, fence, info = match["indent"], match["fence"], match["info"].strip()
        lang = info.split(maxsplit=1)[0].lstrip(".").lower() if info else ""
        attrs = dict(re.findall(r'(\w+)="([^"]*)"', info))
        previous = lines[i - 1].strip() if i > 0 else ""
        marker = NO_EXEC.match(previous)
        body: list[str] = []
        start = i + 1
        i += 1
        while i < len(lines) and not (
            lines[i].strip().startswith(fence[0] * len(fence))
            and lines[i].strip().strip(fence[0]) == ""
        ):
            line = lines[i]
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            i += 1
        i += 1
        found.append(
            Block(
                page,
                start + 1,
                lang,
                "\n".join(body) + "\n",
                attrs,
                marker["reason"] if marker else None,
            )
        )
    return found


def _rel(page: Path) -> str:
    return str(page.relative_to(ROOT)) if page.is_relative_to(ROOT) else str(page)


def _pages_with(langs: set[str]) -> list[Path]:
    return [p for p in PAGES if any(b.lang in langs for b in blocks(p))]


# -- 1. Python blocks ----------------------------------------------------------------------


def run_page(page: Path) -> int:
    """Run the Python blocks of ``page`` in this process (the child side); 0 when all ran."""
    workdir = Path.cwd()
    sys.path.insert(0, str(workdir))
    module = types.ModuleType("docs_page")
    module.__file__ = str(workdir / "docs_page.py")
    sys.modules["docs_page"] = module
    source_lines = page.read_text(encoding="utf-8").splitlines(keepends=True)
    linecache.cache[str(page)] = (0, None, source_lines, str(page))
    written: dict[str, Block] = {}
    page_blocks = blocks(page)
    for index, block in enumerate(page_blocks):
        if block.lang not in PYTHON_LANGS or block.skip_reason is not None:
            continue
        target = block.attrs.get("title", "")
        if target.endswith(".py"):
            path = workdir / target
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block.code, encoding="utf-8")
            written[target[:-3].replace("/", ".").removesuffix(".__init__")] = block
            importlib.invalidate_caches()
            continue
        code = compile("\n" * (block.line - 1) + block.code, str(page), "exec")
        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed):
                exec(code, module.__dict__)
        except BaseException:
            print(printed.getvalue(), f"\n{block.where}: this block raised", file=sys.stderr)
            traceback.print_exc()
            return 1
        shown = page_blocks[index + 1] if index + 1 < len(page_blocks) else None
        if (
            shown is not None
            and shown.attrs.get("title") == OUTPUT_TITLE
            and not _CHECKER.check_output(shown.code, printed.getvalue(), OUTPUT_OPTIONS)
        ):
            print(
                f"{shown.where}: the Output block does not match what the block above"
                f" printed\n--- shown\n{shown.code}--- printed\n{printed.getvalue()}",
                file=sys.stderr,
            )
            return 1
    missing = [name for name in written if name not in sys.modules]
    for name in missing:
        print(
            f"{written[name].where}: file block {written[name].attrs['title']} is never"
            " imported by the page's code, so it never ran",
            file=sys.stderr,
        )
    return 1 if missing else 0


@dataclass
class PageRun:
    returncode: int
    output: str


def _run_in_child(page: Path) -> PageRun:
    with tempfile.TemporaryDirectory(prefix="canaryconf-docs-") as workdir:
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "NO_MKDOCS_2_WARNING": "1"}
        env.pop("PYTHONSTARTUP", None)
        try:
            proc = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), str(page)],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=PAGE_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            output = (exc.stdout or "") + (exc.stderr or "")
            if isinstance(output, bytes):
                output = output.decode(errors="replace")
            return PageRun(-1, f"timed out after {PAGE_TIMEOUT:g}s\n{output}")
        return PageRun(proc.returncode, proc.stdout + proc.stderr)


PYTHON_PAGES = _pages_with(PYTHON_LANGS)


@pytest.fixture(scope="module")
def page_runs(request: pytest.FixtureRequest) -> Iterator[dict[Path, Any]]:
    """Start every selected page at once (each in its own interpreter); tests wait for
    their own."""
    wanted = [
        item.callspec.params["page"]
        for item in request.session.items
        if getattr(item, "callspec", None) is not None
        and item.name.startswith("test_python_blocks_run")
    ]
    workers = max(2, os.cpu_count() or 2)
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        yield {page: pool.submit(_run_in_child, page) for page in wanted}


@pytest.mark.parametrize("page", PYTHON_PAGES, ids=_rel)
def test_python_blocks_run(page: Path, page_runs: dict[Path, Any]) -> None:
    result: PageRun = page_runs[page].result()
    assert result.returncode == 0, f"{_rel(page)}:\n{result.output}"


def test_no_exec_markers_are_explained() -> None:
    """``<!-- no-exec: reason -->`` skips only the block right after it, and must say why."""
    problems = []
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        fences = {b.line - 1 for b in blocks(page)}  # 1-based line of each opening fence
        for number, line in enumerate(lines, start=1):
            marker = NO_EXEC.match(line.strip())
            if marker is None:
                continue
            if not marker["reason"]:
                problems.append(f"{_rel(page)}:{number}: no-exec without a reason")
            if number + 1 not in fences:
                problems.append(f"{_rel(page)}:{number}: no-exec is not right before a fence")
    assert not problems, "\n".join(problems)


#: The widest line a code block may have: a 1280 px wide page shows about 90 characters
#: of a code block (mkdocs-material, default font size) before it scrolls sideways.
MAX_CODE_LINE = 88


def test_code_blocks_fit_the_page() -> None:
    """Code, commands, YAML and printed output are read without scrolling sideways."""
    wide = [
        f"{_rel(b.page)}:{b.line + offset}: {len(line)} characters"
        for p in PAGES
        for b in blocks(p)
        for offset, line in enumerate(b.code.splitlines())
        if len(line) > MAX_CODE_LINE
    ]
    assert not wide, f"lines over {MAX_CODE_LINE} characters:\n" + "\n".join(wide)


def test_api_reference_starts_with_live_and_lists_every_public_name() -> None:
    """The reference page lists ``canaryconf.__all__`` in reading order: ``live`` and the
    settings class first, the errors last."""
    import canaryconf

    page = (DOCS / "reference" / "canaryconf.md").read_text(encoding="utf-8")
    listed = re.findall(r"^ {8}- (\w+)$", page, re.M)
    assert sorted(listed) == sorted(canaryconf.__all__), "the list and __all__ differ"
    assert listed[:3] == ["live", "CanarySettings", "CanaryConfigDict"]
    first_error = listed.index("CanaryConfError")
    errors = listed[first_error:]
    assert all(
        name == "FieldProblem" or issubclass(getattr(canaryconf, name), Exception)
        for name in errors
    ), errors
    assert not any(
        isinstance(getattr(canaryconf, name), type)
        and issubclass(getattr(canaryconf, name), Exception)
        for name in listed[:first_error]
    )


def test_python_is_not_hidden_in_unchecked_blocks() -> None:
    """Doctest-style ``pycon`` blocks would not run: write ```python."""
    bad = [b.where for p in PAGES for b in blocks(p) if b.lang in {"pycon", "pytb"}]
    assert not bad, f"use ```python blocks (they run): {bad}"


def _find_spec(module: str) -> object:
    try:
        return importlib.util.find_spec(module)
    except ModuleNotFoundError:  # its parent package is missing
        return None


# -- 2. mkdocs build --strict -----------------------------------------------------------------


@pytest.mark.docs
def test_mkdocs_build_strict(tmp_path: Path) -> None:
    # module to import -> distribution of the docs dependency group that provides it
    tools = {
        "mkdocs": "mkdocs",
        "material": "mkdocs-material",
        "mkdocstrings": "mkdocstrings",
        "mkdocstrings_handlers.python": "mkdocstrings-python (mkdocstrings[python])",
    }
    missing = [dist for module, dist in tools.items() if _find_spec(module) is None]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not installed: the docs build needs the 'docs' dependency"
            " group of pyproject.toml (pip install --group docs, pip >= 25.1; python3 dev.py"
            " test installs it), or deselect this test with -m 'not docs'"
        )
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "no_proxy": "", "NO_PROXY": ""}
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env[name] = CLOSED_PORT  # anything a plugin fetched would fail the build
    site = tmp_path / "site"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "-f",
            str(ROOT / "mkdocs.yml"),
            "-d",
            str(site),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (site / "index.html").is_file()
    assert (site / "reference" / "canaryconf" / "index.html").is_file()


# -- 3. YAML blocks ---------------------------------------------------------------------------


def _yaml_blocks() -> list[Block]:
    return [b for p in PAGES for b in blocks(p) if b.lang in YAML_LANGS]


@pytest.mark.parametrize("block", _yaml_blocks(), ids=lambda b: b.where)
def test_yaml_blocks_parse(block: Block) -> None:
    yaml = pytest.importorskip("yaml")
    try:
        list(yaml.safe_load_all(block.code))
    except yaml.YAMLError as exc:
        pytest.fail(f"{block.where}: {exc}")


# -- 4. canaryconf command lines --------------------------------------------------------------


def _shell_commands(code: str) -> Iterator[str]:
    for raw in code.replace("\\\n", " ").splitlines():
        line = raw.strip().removeprefix("$ ")
        if line and not line.startswith("#"):
            yield line


def _canaryconf_argv(words: list[str]) -> list[str] | None:
    """The arguments of a command that runs ``canaryconf`` (first word, after variable
    assignments, or after the ``--`` of ``kubectl exec``), up to a shell operator."""
    for index, word in enumerate(words):
        runs = index == 0 or words[index - 1] == "--" or all("=" in w for w in words[:index])
        if runs and (word == "canaryconf" or word.endswith("/canaryconf")):
            argv = []
            for arg in words[index + 1 :]:
                if arg in SHELL_OPERATORS:
                    break
                argv.append(arg)
            return argv
    return None


def _yaml_commands(node: object) -> Iterator[list[str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "command" and isinstance(value, list):
                words = [str(v) for v in value] + [str(a) for a in node.get("args", [])]
                argv = _canaryconf_argv(words)
                if argv is not None:
                    yield argv
            else:
                yield from _yaml_commands(value)
    elif isinstance(node, list):
        for item in node:
            yield from _yaml_commands(item)


def _cli_examples() -> list[tuple[str, list[str]]]:
    examples = []
    for page in PAGES:
        for block in blocks(page):
            if block.lang in SHELL_LANGS:
                for command in _shell_commands(block.code):
                    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
                    lexer.whitespace_split = True
                    lexer.commenters = "#"
                    argv = _canaryconf_argv(list(lexer))
                    if argv is not None:
                        examples.append((block.where, argv))
            elif block.lang in YAML_LANGS:
                import yaml

                for document in yaml.safe_load_all(block.code):
                    for argv in _yaml_commands(document):
                        examples.append((block.where, argv))
    return examples


@pytest.mark.parametrize(("where", "argv"), _cli_examples(), ids=str)
def test_cli_examples_parse(where: str, argv: list[str]) -> None:
    from canaryconf.cli import build_parser

    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(argv)
    except SystemExit as exc:
        assert exc.code == 0, f"{where}: canaryconf {shlex.join(argv)}\n{stderr.getvalue()}"


if __name__ == "__main__":
    sys.exit(run_page(Path(sys.argv[1]).resolve()))
