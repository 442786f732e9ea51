"""Citations in code, configs and tests resolve inside the repository.

* No ``.py`` file cites section numbers of notes that are not part of the repository (the section sign, or the
  name of those notes).
* Every citation of a docs/reference.md section (the file name, a comma, then one or more quoted headings
  separated by commas, as in the module docstrings of mfuser/) names a ``##`` / ``###`` heading that exists
  in docs/reference.md, and those headings are unique.

The forbidden strings are built at run time so that this file does not trip its own check.
"""
import os
import re

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCANNED_DIRS = ("mfuser", "tools", "tests", "configs", "datasets", "projects")
REFERENCE_DOC = os.path.join(REPO_ROOT, "docs", "reference.md")

SECTION_SIGN = chr(167)
OUTSIDE_NOTES = "MFUSER" + "_REFERENCE"
CITATION = "docs/reference" + ".md,"
# separators between the quoted headings of one citation: spaces, line breaks, commas, comment markers, "and"
_SEPARATOR = re.compile(r"(?:[\s,]|#:?|\band\b)*")
_QUOTED = re.compile(r'"([^"]+)"')  # a heading may wrap onto the next line of a docstring
_HEADING = re.compile(r"^(#{2,3}) (.+?)\s*$", re.MULTILINE)


def _python_files():
    for top in SCANNED_DIRS:
        for root, dirs, files in os.walk(os.path.join(REPO_ROOT, top)):
            dirs[:] = [d for d in dirs if d != "__pycache__" and not d.startswith(".")]
            for name in files:
                if name.endswith(".py"):
                    yield os.path.join(root, name)


@pytest.fixture(scope="module")
def sources():
    out = {}
    for path in _python_files():
        with open(path, encoding="utf-8") as f:
            out[os.path.relpath(path, REPO_ROOT)] = f.read()
    assert out, "no Python files found"
    return out


@pytest.fixture(scope="module")
def headings():
    with open(REFERENCE_DOC, encoding="utf-8") as f:
        return [m.group(2) for m in _HEADING.finditer(f.read())]


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def citations(text: str):
    """(position, heading) for every quoted heading that follows ``docs/reference.md,`` in ``text``."""
    start = text.find(CITATION)
    while start != -1:
        pos = start + len(CITATION)
        while True:
            pos = _SEPARATOR.match(text, pos).end()
            m = _QUOTED.match(text, pos)
            if m is None:
                break
            yield m.start(), " ".join(m.group(1).split())
            pos = m.end()
        start = text.find(CITATION, pos)


def test_no_citations_of_notes_outside_the_repository(sources):
    bad = [
        f"{path}:{i}: {line.strip()}"
        for path, text in sources.items()
        for i, line in enumerate(text.splitlines(), 1)
        if SECTION_SIGN in line or OUTSIDE_NOTES in line
    ]
    assert not bad, "cite docs/reference.md by heading instead:\n" + "\n".join(bad)


def test_reference_headings_are_unique(headings):
    dupes = sorted({h for h in headings if headings.count(h) > 1})
    assert not dupes, f"docs/reference.md: headings cited by name must be unique: {dupes}"


def test_cited_headings_exist(sources, headings):
    known = set(headings)
    found, bad = 0, []
    for path, text in sources.items():
        for pos, heading in citations(text):
            found += 1
            if heading not in known:
                bad.append(f"{path}:{_line(text, pos)}: {heading!r}")
    assert found > 0, "no docs/reference.md citations found: has the citation format changed?"
    assert not bad, "citations of headings that docs/reference.md does not have:\n" + "\n".join(bad)


def test_citation_parser():
    text = 'a (docs/reference' + '.md, "One", "Two\nwrapped") b\n#: docs/reference' + '.md, "Three",\n#: "Four".'
    assert [h for _, h in citations(text)] == ["One", "Two wrapped", "Three", "Four"]
