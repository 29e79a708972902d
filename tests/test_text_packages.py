"""make demo's Spanish text on a fresh machine (wrapper/text_packages.py): the decision for every
case, and the command line on this machine's real paths (nothing is ever installed here)."""

import pytest

from conftest import PY, REPO, run
from wrapper import text_packages

BOTH = ["fortunes-es", "debian-reference-es"]


@pytest.mark.parametrize("is_root", [True, False])
@pytest.mark.parametrize("has_apt", [True, False])
def test_everything_present_needs_nothing(is_root, has_apt):
    assert text_packages.decide([], BOTH, is_root, has_apt) == ("nothing", [], "")


def test_root_with_apt_installs_what_is_missing_and_says_so():
    action, packages, message = text_packages.decide(BOTH, [], is_root=True, has_apt=True)
    assert (action, packages) == ("install", BOTH)
    assert message == ("installing Debian's fortunes-es and debian-reference-es "
                       "(Spanish text for make demo) with apt-get")
    action, packages, _ = text_packages.decide(["debian-reference-es"], ["fortunes-es"],
                                               is_root=True, has_apt=True)
    assert (action, packages) == ("install", ["debian-reference-es"])


def test_not_root_stops_with_the_exact_command_and_the_corpus_way_out():
    action, packages, message = text_packages.decide(BOTH, [], is_root=False, has_apt=True)
    assert (action, packages) == ("stop", [])
    assert "run 'sudo apt-get install fortunes-es debian-reference-es' and make demo again" in message
    assert "CORPUS=path/to/text.txt" in message and "\n" not in message


@pytest.mark.parametrize("is_root", [True, False])
def test_no_apt_stops_saying_so_with_the_command_for_debian_and_the_corpus_way_out(is_root):
    action, _, message = text_packages.decide(BOTH, [], is_root=is_root, has_apt=False)
    assert action == "stop"
    assert "this machine has no apt-get" in message
    assert "'sudo apt-get install fortunes-es debian-reference-es'" in message
    assert "CORPUS=" in message


@pytest.mark.parametrize("is_root,has_apt", [(False, True), (False, False), (True, False)])
def test_one_package_present_goes_on_with_a_note(is_root, has_apt):
    action, packages, message = text_packages.decide(["debian-reference-es"], ["fortunes-es"],
                                                     is_root, has_apt)
    assert (action, packages) == ("note", [])
    assert message.startswith("debian-reference-es is not installed; the demo uses "
                              "fortunes-es only (for more text: ")
    assert message.endswith("apt-get install debian-reference-es)")


def test_package_state_reads_the_files_make_demo_reads(tmp_path, monkeypatch):
    fortunes = tmp_path / "fortunes-es"
    fortunes.mkdir()
    monkeypatch.setattr(text_packages, "PACKAGE_PATHS", (
        ("fortunes-es", str(fortunes)), ("debian-reference-es", str(tmp_path / "absent.txt.gz"))))
    assert text_packages.package_state() == (["debian-reference-es"], ["fortunes-es"])
    assert text_packages.debian_text_paths() == [str(fortunes)]


def test_command_line_on_this_machine_does_nothing(debian_fortunes_dir, debian_reference_lines):
    """Both packages are installed here (the test setup installs them): no output, status 0;
    with CORPUS= given nothing is looked at."""
    for args in ([], ["--corpus", "/some/text.txt"]):
        proc = run([PY, "-m", "wrapper.text_packages"] + args, cwd=REPO)
        assert proc.stdout == "" and proc.stderr == ""
    assert text_packages.debian_text_paths() == [path for _, path in text_packages.PACKAGE_PATHS]


def test_a_given_corpus_needs_no_package_even_when_they_are_missing(tmp_path, monkeypatch):
    """CORPUS= (make exports it) or --corpus: nothing to check, nothing to install."""
    monkeypatch.setattr(text_packages, "PACKAGE_PATHS", (("fortunes-es", str(tmp_path / "es")),))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert text_packages.main(["--corpus", "text.txt"]) == 0
    monkeypatch.setenv("CORPUS", "text.txt")
    assert text_packages.main([]) == 0


def test_command_line_stops_with_one_line_when_it_cannot_install(tmp_path, monkeypatch, capsys):
    """Packages really missing (paths that do not exist) and no apt-get on PATH: one line,
    exit 2, before anything else (as root here, so without apt-get it cannot install)."""
    monkeypatch.setattr(text_packages, "PACKAGE_PATHS", (
        ("fortunes-es", str(tmp_path / "es")), ("debian-reference-es", str(tmp_path / "r.gz"))))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CORPUS", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        text_packages.run_main(lambda: text_packages.main([]), program="text_packages")
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("text_packages: error: make demo needs Debian's Spanish text "
                          "(fortunes-es, debian-reference-es)")
    assert len(err.strip().splitlines()) == 1
