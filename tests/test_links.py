"""Every relative link and image in every tracked Markdown file resolves: to a file or folder of the repository,
and, for an #anchor into a Markdown file, to one of its headings (GitHub's slugs)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest

from helpers.config import ROOT

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+).*?\1")
# [text](target "title") and ![alt](target); the text may hold one level of brackets (a badge inside a link).
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
HTML = re.compile(r"<(?:a|img|source)\b[^>]*?\s(?:href|src)\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<[^>]+\s(?:id|name)\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:|^//")  # http:, https:, mailto:, ... and protocol-relative


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks, with inline code spans blanked out."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(INLINE_CODE.sub("", line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text, lowercased, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"(`+)(.*?)\1", r"\2", heading)  # code spans keep their text
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links keep their text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()  # HTML tags go
    text = re.sub(r"[^\w\- ]", "", text)  # \w keeps letters, digits and _ (unicode too)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every #anchor a Markdown file offers: its headings' slugs (duplicates numbered -1, -2, ...) and HTML ids."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    text = path.read_text(encoding="utf-8")
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    for line in lines:
        match = HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
        found.update(HTML_ANCHOR.findall(line))
    return found


def targets(text: str) -> list[str]:
    """The link and image targets of a Markdown text, in order."""
    found = []
    for line in prose_lines(text):
        found += [t.strip("<>") for t in INLINE_LINK.findall(line)]
        found += [t.strip("<>") for t in REFERENCE.findall(line)]
        found += HTML.findall(line)
    return found


def broken_links(path: Path, root: Path) -> list[str]:
    """What does not resolve among the relative links of one Markdown file, one line each."""
    problems = []
    for target in targets(path.read_text(encoding="utf-8")):
        if EXTERNAL.match(target):
            continue
        link, _, fragment = target.partition("#")
        link = unquote(link.split("?", 1)[0])
        if link.startswith("/"):
            resolved = (root / link.lstrip("/")).resolve()
        elif link:
            resolved = (path.parent / link).resolve()
        else:
            resolved = path.resolve()
        where = f"{path.relative_to(root)}: {target}"
        if not resolved.is_relative_to(root.resolve()):
            problems.append(f"{where} points outside the repository")
        elif not resolved.exists():
            problems.append(f"{where} does not exist")
        elif fragment and resolved.suffix.lower() == ".md" and unquote(fragment) not in anchors(resolved):
            problems.append(f"{where}: {resolved.name} has no heading with the anchor #{fragment}")
    return problems


def tracked_markdown() -> list[Path]:
    """git ls-files '*.md'; outside a git checkout (an unpacked archive), every Markdown file but caches and runs."""
    out = subprocess.run(["git", "ls-files", "-z", "*.md"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode == 0:
        return [ROOT / name for name in out.stdout.split("\0") if name]
    skip = {"data", "runs", "node_modules"}
    return [
        p
        for p in ROOT.rglob("*.md")
        if not any(part.startswith(".") or part in skip for part in p.relative_to(ROOT).parts[:-1])
    ]


def test_every_relative_link_and_image_in_the_tracked_markdown_resolves():
    files = tracked_markdown()
    assert ROOT / "README.md" in files
    problems = [p for path in files if path.exists() for p in broken_links(path, ROOT)]
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_the_readme_links_to_every_page_the_rest_moved_to():
    readme = targets((ROOT / "README.md").read_text(encoding="utf-8"))
    for page in ("docs/experiments.md", "benchmarks/README.md", "docs/engineering.md", "docs/record.png"):
        assert any(t.partition("#")[0] == page for t in readme), f"the README does not link to {page}"


def test_the_checker_finds_a_broken_link(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# A page\n\n## Fourth round: where it starts\n\n## Twice\n\n## Twice\n")
    (tmp_path / "figure.png").write_bytes(b"")
    readme = tmp_path / "README.md"
    readme.write_text(
        "# Title\n\n"
        "[fine](docs/page.md) [fine](docs/page.md#fourth-round-where-it-starts) [fine](docs/page.md#twice-1)\n"
        "![fine](figure.png) [fine](#title) [fine](https://example.org/missing.md) [fine](docs/)\n"
        '[gone](docs/missing.md) ![gone](<img/missing.png> "a title")\n'
        "[no such heading](docs/page.md#fifth-round) [no such heading](#nowhere)\n"
        '<img src="gone.svg"> [outside](../elsewhere.md)\n'
        "`[in code](not/checked.md)`\n\n```\n[in a fence](not/checked.md)\n```\n[ref]: docs/gone-too.md\n"
    )
    problems = broken_links(readme, tmp_path)
    assert sorted(p.split(": ", 1)[1] for p in problems) == sorted(
        [
            "docs/missing.md does not exist",
            "img/missing.png does not exist",
            "docs/page.md#fifth-round: page.md has no heading with the anchor #fifth-round",
            "#nowhere: README.md has no heading with the anchor #nowhere",
            "docs/gone-too.md does not exist",
            "gone.svg does not exist",
            "../elsewhere.md points outside the repository",
        ]
    )


@pytest.mark.parametrize(
    "heading, anchor",
    [
        ("From the tutorial's recipe to ours", "from-the-tutorials-recipe-to-ours"),
        ("The lowest versions (`make test-lowest`)", "the-lowest-versions-make-test-lowest"),
        ("Fourth round: where attention starts", "fourth-round-where-attention-starts"),
        ("MLM@[MASK] and 80/10/10", "mlmmask-and-801010"),
        ("snake_case stays", "snake_case-stays"),
    ],
)
def test_slugs_follow_github(heading, anchor):
    assert slug(heading) == anchor
