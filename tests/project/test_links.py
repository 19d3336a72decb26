"""The documentation's relative links resolve: every ``[text](path)`` and ``[text](path#anchor)`` in the README, the
docs pages and the experiments' READMEs names a file or directory that exists next to the linking file, and an anchor
into a markdown file names one of its headings (GitHub's slugs). The README stays short."""

import glob
import os
import re
import unicodedata

import pytest

from tests.support import ROOT  # noqa: E402
PAGES = ["README.md", "experiments/README.md", "experiments/archive/README.md", "experiments/theory/README.md"]
PAGES += sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))
README_MAX_LINES = 300

LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^()\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, every character but letters, digits, marks, '-',
    '_' and spaces removed, spaces turned into '-' (not collapsed)."""
    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link in a heading: its text
    text = re.sub(r"\*{1,3}([^*]+)\*{1,3}", r"\1", text)  # emphasis (underscores stay: GitHub keeps them)
    kept = "".join(c for c in text.lower() if c in "-_ " or unicodedata.category(c)[0] in "LNM")
    return kept.replace(" ", "-")


def prose_lines(path: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    out, fenced = [], False
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if FENCE.match(line):
                fenced = not fenced
                continue
            if not fenced:
                out.append((number, line))
    return out


def anchors(path: str) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for _, line in prose_lines(path):
        match = HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(page: str) -> list[tuple[int, str]]:
    path = os.path.join(ROOT, page)
    return [(number, m.group(1)) for number, line in prose_lines(path)
            for m in LINK.finditer(re.sub(r"`[^`]*`", "", line))]  # a link inside a code span is not a link


def broken(page: str, target: str) -> str | None:
    """Why ``target`` (a link in ``page``) does not resolve, or None."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http(s), mailto and other schemes
        return None
    file_part, _, anchor = target.partition("#")
    here = os.path.join(ROOT, page)
    resolved = here if not file_part else os.path.normpath(os.path.join(os.path.dirname(here), file_part))
    if not os.path.exists(resolved):
        return f"{os.path.relpath(resolved, ROOT)} does not exist"
    if anchor and resolved.endswith(".md") and anchor not in anchors(resolved):
        return f"no heading with the anchor #{anchor} in {os.path.relpath(resolved, ROOT)}"
    return None


@pytest.mark.parametrize("page", PAGES)
def test_relative_links_resolve(page):
    assert os.path.exists(os.path.join(ROOT, page)), f"{page} is missing"
    problems = [f"{page}:{number}: [{target}] {why}" for number, target in links(page)
                if (why := broken(page, target))]
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_readme_is_short():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        count = sum(1 for _ in handle)
    assert count <= README_MAX_LINES, f"README.md has {count} lines; at most {README_MAX_LINES}"


def test_the_checker_catches_what_it_should(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Memory plans: `nabla-jax plan`\n\n```\n# not a heading\n```\n\n## Memory plans: `nabla-jax plan`\n",
                    encoding="utf-8")
    assert anchors(str(page)) == {"memory-plans-nabla-jax-plan", "memory-plans-nabla-jax-plan-1"}
    assert slug("The ∇-Reasoner in ten lines of Python") == "the--reasoner-in-ten-lines-of-python"
    assert slug("Several devices: `--mesh`") == "several-devices---mesh"
    assert broken("README.md", "https://example.com/x") is None
    assert broken("README.md", "docs/no-such-page.md") == "docs/no-such-page.md does not exist"
    assert broken("README.md", "#no-such-heading").startswith("no heading with the anchor #no-such-heading")
