"""The README's failure table names the tests that show each row: every one must exist, so
that renaming or removing a test cannot leave a row promising what nothing shows."""
import os
import re

from conftest import REPO

TESTS = os.path.join(REPO, "tests")
# `test_x.py::test_name`, `test_x.py::test_name[param]`, or `::test_name` (same file as
# the previous reference on that line).
REFERENCE = re.compile(r"`(?:tests/)?(test_\w+\.py)?::(test_\w+)(?:\[[^`\]]*\])?`")


def referenced_tests(readme_text):
    """[(line number, file, function)] of every test the README names after `::`."""
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
    with open(path, encoding="utf-8") as f:
        return set(re.findall(r"^(?:    )?def (test_\w+)\(", f.read(), re.M))


def test_every_test_the_readme_names_exists():
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        references = referenced_tests(f.read())
    assert len(references) > 50   # the failure table, not an empty match
    missing = ["README.md line %d: %s::%s" % (n, f, t) for n, f, t in references
               if f is None or t not in defined_tests(f)]
    assert not missing, "\n".join(missing)


def test_the_reference_pattern_reads_the_tables_forms():
    text = ("| x | y | `test_a.py::test_one`, `::test_two[case-1]` |\n"
            "| z | `tests/test_b.py::test_three` and `::test_four` |\n")
    assert referenced_tests(text) == [(1, "test_a.py", "test_one"), (1, "test_a.py", "test_two"),
                                      (2, "test_b.py", "test_three"),
                                      (2, "test_b.py", "test_four")]
