"""A griffe extension that turns canaryconf's reST-flavoured docstrings into Markdown.

canaryconf's docstrings are written for ``help()`` and doctest: Sphinx roles
(``:class:`~canaryconf.Change```), doctest sessions (``>>>``), reST literal blocks
(``::`` and ``.. code-block::``) and one reST simple table. mkdocstrings renders
docstrings as Markdown, where ``>>>`` would become nested block quotes and the roles
would show literally. This extension rewrites each docstring when griffe loads it:

- roles become code spans (``:class:`~canaryconf.Change``` -> ```Change```);
- doctest sessions become fenced ``pycon`` blocks (``# doctest:`` directives dropped);
- literal blocks and ``code-block`` directives become fenced blocks;
- simple tables become fenced text blocks.

The source stays as it is: ``help()`` and doctest keep working. Loaded by mkdocs.yml
(``extensions: [docs/_ext/rst_docstrings.py]``); excluded from the site itself.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(
    r":(?:py:)?(?:class|meth|func|attr|data|mod|exc|obj|const):`(~?)([^`]+)`"
)
_TABLE_BORDER = re.compile(r"^\s*=+(?: +=+)+\s*$")
_CODE_BLOCK = re.compile(r"^(\s*)\.\. code-block::\s*(\w*)\s*$")
_DOCTEST_DIRECTIVE = re.compile(r"\s*# doctest:.*$")


def _indent_of(line: str) -> int:
    return len(line) - len(line.lstrip())


def _indented_block(lines: list[str], start: int, base: int) -> tuple[list[str], int]:
    """The lines from ``start`` indented deeper than ``base`` (blank lines included),
    dedented; and the index after them."""
    block: list[str] = []
    i = start
    while i < len(lines) and not lines[i].strip():
        i += 1
    while i < len(lines) and (not lines[i].strip() or _indent_of(lines[i]) > base):
        block.append(lines[i])
        i += 1
    while block and not block[-1].strip():
        block.pop()
        i -= 1
    if not block:
        return [], start
    cut = min(_indent_of(line) for line in block if line.strip())
    return [line[cut:] for line in block], i


def _fence(indent: str, lang: str, body: list[str]) -> list[str]:
    return [
        "",
        f"{indent}```{lang}",
        *[f"{indent}{line}" if line else "" for line in body],
        f"{indent}```",
        "",
    ]


def convert(text: str) -> str:
    """The Markdown form of one docstring."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        indent = line[: _indent_of(line)]
        if stripped.startswith(">>>"):
            session: list[str] = []
            while i < len(lines) and lines[i].strip():
                session.append(
                    _DOCTEST_DIRECTIVE.sub("", lines[i][len(indent) :].rstrip())
                )
                i += 1
            out.extend(_fence(indent, "pycon", session))
            continue
        directive = _CODE_BLOCK.match(line)
        if directive is not None:
            body, i = _indented_block(lines, i + 1, _indent_of(line))
            out.extend(_fence(indent, directive.group(2) or "text", body))
            continue
        if stripped.endswith("::") and not stripped.startswith(".."):
            body, after = _indented_block(lines, i + 1, _indent_of(line))
            if body:
                if stripped != "::":
                    out.append(_ROLE.sub(_role, line.rstrip()[:-1]))
                out.extend(_fence(indent, "text", body))
                i = after
                continue
        if _TABLE_BORDER.match(line):
            # A simple table ends at a border line followed by a blank line (or EOF).
            table = [line[len(indent) :]]
            i += 1
            while i < len(lines):
                table.append(lines[i][len(indent) :].replace("``", ""))
                i += 1
                if _TABLE_BORDER.match(lines[i - 1]) and (
                    i == len(lines) or not lines[i].strip()
                ):
                    break
            out.extend(_fence(indent, "text", table))
            continue
        out.append(_ROLE.sub(_role, line))
        i += 1
    return "\n".join(out).strip("\n")


def _role(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    target = target.strip()
    if tilde:
        target = target.rsplit(".", 1)[-1]
    return f"`{target}`"


class RstDocstrings(griffe.Extension):
    """Rewrite every docstring as it is loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = convert(obj.docstring.value)
