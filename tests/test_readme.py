"""The README and docs/: the failure tables name the tests that show each row, and every one
must exist, so that renaming or removing a test cannot leave a row promising what nothing
shows; the README stays a user's page (short, linking to the docs that exist); no commit id
stands in the prose of any of them."""
import glob
import os
import re

from conftest import REPO

TESTS = os.path.join(REPO, "tests")
README = os.path.join(REPO, "README.md")
DOCS = sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))
README_MAX_LINES = 300
# `test_x.py::test_name`, `test_x.py::test_name[param]`, or `::test_name` (same file as
# the previous reference on that line).
REFERENCE = re.compile(r"`(?:tests/)?(test_\w+\.py)?::(test_\w+)(?:\[[^`\]]*\])?`")
# A commit id as git abbreviates or prints it: 7 to 40 lowercase hex digits standing alone,
# holding a digit (so that words spelt in a-f, "decade", "facade", are not ids) and a letter
# (so that plain numbers, "1000000", are not). A SHA-256 digest is 64 digits: the bounds
# leave it out, since a content digest in a table (a file's checksum) is a fact a reader can
# check, not a pointer into this repository's history. Code blocks are read too: what a
# program printed is quoted with its commit id elided.
COMMIT_ID = re.compile(r"(?<![0-9A-Za-z])(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}"
                       r"(?![0-9A-Za-z])")
# [text](target) with a relative target: a file of this repository.
LINK = re.compile(r"\]\((?!https?://)([^)#\s]+)(?:#[^)]*)?\)")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def referenced_tests(readme_text):
    """[(line number, file, function)] of every test the text names after `::`."""
    found = []
    for number, line in enumerate(readme_text.splitlines(), 1):
        current = None
        for match in REFERENCE.finditer(line):
            current = match.group(1) or current
            found.append((number, current, match.group(2)))
    return found


def defined_tests(filename):
    path = os.path.join(TESTS, filename)
    if not os.path.isfile(path):
        return set()
    return set(re.findall(r"^(?:    )?def (test_\w+)\(", read(path), re.M))


def missing_tests(path):
    return ["%s line %d: %s::%s" % (os.path.relpath(path, REPO), n, f, t)
            for n, f, t in referenced_tests(read(path))
            if f is None or t not in defined_tests(f)]


def commit_ids(text):
    """[(line number, id)] of every commit id in the text."""
    return [(number, match.group(0)) for number, line in enumerate(text.splitlines(), 1)
            for match in COMMIT_ID.finditer(line)]


def test_every_test_the_readme_and_docs_name_exists():
    # The README's table has one row per kind of failure, docs/FAILURES.md one per case:
    # both well above an empty match.
    assert len(referenced_tests(read(README))) > 40
    assert len(referenced_tests(read(os.path.join(REPO, "docs", "FAILURES.md")))) > 100
    missing = [line for path in [README] + DOCS for line in missing_tests(path)]
    assert not missing, "\n".join(missing)


def test_a_renamed_test_is_caught(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("| x | `test_readme.py::test_the_readme_is_short`, `::test_gone` |\n"
                    "| y | `test_nowhere.py::test_anything` |\n")
    assert missing_tests(str(page)) == [
        "%s line 1: test_readme.py::test_gone" % os.path.relpath(str(page), REPO),
        "%s line 2: test_nowhere.py::test_anything" % os.path.relpath(str(page), REPO)]


def test_the_reference_pattern_reads_the_tables_forms():
    text = ("| x | y | `test_a.py::test_one`, `::test_two[case-1]` |\n"
            "| z | `tests/test_b.py::test_three` and `::test_four` |\n")
    assert referenced_tests(text) == [(1, "test_a.py", "test_one"), (1, "test_a.py", "test_two"),
                                      (2, "test_b.py", "test_three"),
                                      (2, "test_b.py", "test_four")]


def test_the_readme_is_short():
    lines = read(README).count("\n")
    assert lines < README_MAX_LINES, (
        "README.md has %d lines; keep it under %d for users: design goes to docs/DESIGN.md, "
        "measurements to docs/BENCHMARKS.md, failure details to docs/FAILURES.md"
        % (lines, README_MAX_LINES))


def test_the_readme_links_the_docs_and_every_relative_link_resolves():
    readme = read(README)
    for doc in ("docs/DESIGN.md", "docs/BENCHMARKS.md", "docs/FAILURES.md"):
        assert "](%s" % doc in readme, doc
    broken = []
    for path in [README] + DOCS:
        for target in LINK.findall(read(path)):
            if not os.path.exists(os.path.join(os.path.dirname(path), target)):
                broken.append("%s: %s" % (os.path.relpath(path, REPO), target))
    assert not broken, "\n".join(broken)


def test_no_commit_id_in_the_readme_or_docs():
    found = ["%s line %d: %s" % (os.path.relpath(path, REPO), number, commit)
             for path in [README] + DOCS for number, commit in commit_ids(read(path))]
    assert not found, "\n".join(found)


def test_the_commit_id_pattern():
    sha256 = "5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
    text = ("at commit 1e9b09e, and 44a8ba1 (before)\n"
            "| corpus | %s |\n"
            "a decade of facade; 1000000 lines; U+1F971; 4.77e-07; model.ckpt-40\n"
            "`8a46635f32083ada044d7e9ad09604742600ee7b`\n" % sha256)
    assert commit_ids(text) == [(1, "1e9b09e"), (1, "44a8ba1"),
                                (4, "8a46635f32083ada044d7e9ad09604742600ee7b")]
