"""The library's own text stays short and current: module docstrings in nabla_jax/ and convert/ say what the module is
for and its invariants in at most DOCSTRING_MAX_WORDS words (the detail lives in docs/design-notes.md), and no source
or documentation file there cites a numbered change (history lives in docs/performance-log.md)."""

import ast
import os
import re

from tests.support import ROOT  # noqa: E402
PACKAGES = ("nabla_jax", "convert")
DOCSTRING_MAX_WORDS = 130
TEXT_SUFFIXES = (".py", ".md")  # the library's prose; data files (benchmarks, configs, weights) are not checked
CHANGE_CITATION = re.compile(r"(?i)\bchange \d+\b")


def library_files(suffixes: tuple[str, ...]) -> list[str]:
    """Paths relative to the repository root, sorted, of the files under PACKAGES ending in one of ``suffixes``."""
    found = []
    for package in PACKAGES:
        for directory, subdirectories, files in os.walk(os.path.join(ROOT, package)):
            subdirectories[:] = sorted(d for d in subdirectories if d != "__pycache__")
            found += [os.path.relpath(os.path.join(directory, f), ROOT) for f in files if f.endswith(suffixes)]
    return sorted(found)


def test_there_are_library_files():
    assert len(library_files((".py",))) > 50


def test_module_docstrings_are_short():
    offenders = []
    for path in library_files((".py",)):
        with open(os.path.join(ROOT, path), encoding="utf-8") as handle:
            docstring = ast.get_docstring(ast.parse(handle.read(), filename=path))
        words = len(docstring.split()) if docstring else 0
        if words > DOCSTRING_MAX_WORDS:
            offenders.append(f"{path}: {words} words")
    assert not offenders, (
        f"module docstrings over {DOCSTRING_MAX_WORDS} words (keep the purpose and invariants; move the detail to "
        "docs/design-notes.md):\n" + "\n".join(offenders)
    )


def test_no_numbered_change_citations():
    offenders = []
    for path in library_files(TEXT_SUFFIXES):
        with open(os.path.join(ROOT, path), encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if CHANGE_CITATION.search(line):
                    offenders.append(f"{path}:{number}: {line.strip()}")
    assert not offenders, (
        "numbered changes cited in the library (state the invariant or the reason; history goes to "
        "docs/performance-log.md):\n" + "\n".join(offenders)
    )
