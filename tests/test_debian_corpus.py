"""CORPUS=debian-es (wrapper/debian_corpus.py): Spanish sentences from Debian's real, installed
packages. The builds here use a small subset of them (SUBSET, installed by .ci/run); the whole
set's measured time is in docs/BENCHMARKS.md ("CORPUS=debian-es")."""
import collections
import gzip
import json
import os

import pytest

from conftest import MAKE, REPO, module, read_parts, run
from wrapper import debian_corpus, pipeline, spanish_text, text_packages
from wrapper.cli import run_main

SUBSET = ",".join(text_packages.TEST_PACKAGES)
ROOTS = {e.package: e.root for e in text_packages.DEBIAN_ES}
MAINT_GUIDE_PAGE = os.path.join(ROOTS["maint-guide-es"], "first.es.html")
MAN_PAGE = os.path.join(ROOTS["manpages-es"], "man1", "ls.1.gz")


def need_subset():
    entries = debian_corpus.selection("debian-es=" + SUBSET)
    missing = [e.package for e in entries if not os.path.isdir(e.root)]
    if missing:
        pytest.fail("missing Debian packages: apt-get install %s (.ci/run does)"
                    % " ".join(missing))


def lines_of(path):
    with open(path, encoding="utf-8") as f:
        return f.read().split("\n")


# ---- extraction ------------------------------------------------------------------------------

def test_a_real_html_page_gives_spanish_sentences_without_markup_navigation_or_code():
    need_subset()
    [sentences] = debian_corpus.extract((MAINT_GUIDE_PAGE, "html"))
    raw = open(MAINT_GUIDE_PAGE, encoding="utf-8").read()
    assert "navfooter" in raw and "mkdir -p hello-sh" in raw and "Siguiente" in raw
    assert "Vamos a construir nuestro propio paquete (o, mejor aún, adoptar un paquete ya " \
           "existente)." in sentences
    assert len(sentences) > 100
    text = "\n".join(sentences)
    assert "<" not in text and "&lt;" not in text and "&amp;" not in text
    assert "mkdir" not in text                               # the <pre class="screen"> block
    assert "Modificar las fuentes" not in sentences          # the next chapter, in the footer
    assert not any(w in sentences for w in ("Anterior", "Siguiente", "Inicio"))
    # one sentence a line: none ends a sentence and starts another after ". "
    assert all(spanish_text.split_sentences(s) == [s] for s in sentences)


def test_a_real_man_page_gives_its_prose_without_roff_synopsis_or_translators():
    need_subset()
    [sentences] = debian_corpus.extract((MAN_PAGE, "man"))
    with gzip.open(MAN_PAGE, "rt", encoding="utf-8") as f:
        raw = f.read()
    assert ".SH SINOPSIS" in raw and "\\fB" in raw and ".SH TRADUCCIÓN" in raw
    assert "Por defecto, muestra información de los ARCHIVO (pueden ser uno o varios) del " \
           "directorio actual." in sentences
    assert "imprime escapes en estilo C para los caracteres no gráficos" in sentences
    text = "\n".join(sentences)
    assert "\\" not in text and not any(s.startswith((".", "'")) for s in sentences)
    assert "OPCIÓN]..." not in text                          # SINOPSIS
    assert "traducción al español" not in text.lower()      # TRADUCCIÓN
    assert "-a, --all" not in sentences                      # an option's tag is no sentence


def test_the_sentence_splitter_keeps_abbreviations_and_question_marks_together():
    split = spanish_text.split_sentences
    assert split("Hola. ¿Qué tal? Bien, gracias.") == ["Hola.", "¿Qué tal?", "Bien, gracias."]
    assert split("El Sr. Pérez llegó, p. ej. ayer, con su perro, etc. Luego se fue.") == [
        "El Sr. Pérez llegó, p. ej. ayer, con su perro, etc. Luego se fue."]
    assert split("¿Vienes el lunes a las 9 a. m. o no? Dime.") == [
        "¿Vienes el lunes a las 9 a. m. o no?", "Dime."]
    assert split("¡Hola! ¿Qué tal? Dijo «basta.» Luego calló.") == [
        "¡Hola!", "¿Qué tal?", "Dijo «basta.»", "Luego calló."]
    assert split("Use la versión 2.0. La nueva está en www.debian.org. Espera...") == [
        "Use la versión 2.0.", "La nueva está en www.debian.org.", "Espera..."]
    assert split("¿Vienes?, dijo él.") == ["¿Vienes?, dijo él."]


def test_the_line_filter_keeps_spanish_prose_only():
    keep = spanish_text.keep_sentence
    assert keep("Muestra las diapositivas solo en blanco y negro.")
    assert not keep("This document will be dropped in the following releases.")
    assert not keep("Anterior Siguiente Inicio")
    assert not keep("Copyright © 2011 de la Fundación del Software Libre.")
    assert not keep("$ tar -cvzf hello-sh-1.0.tar.gz hello-sh-1.0")
    assert not keep("Sintaxis")


# ---- the corpus ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def make_built(tmp_path_factory):
    """`make corpus CORPUS=debian-es=SUBSET` into a fresh DATA_DIR, run twice."""
    need_subset()
    data = str(tmp_path_factory.mktemp("debian-es") / "data")
    args = MAKE + ["corpus", "DATA_DIR=" + data, "CORPUS=debian-es=" + SUBSET,
                   "NUM_PROCESSES=2", "TRAIN_SIZE=10000000"]
    first = run(args)
    again = run(args)
    return data, first, again


def test_make_corpus_debian_es_builds_the_corpus_and_the_held_out_sentences(make_built):
    data, first, again = make_built
    names, texts = read_parts(os.path.join(data, "corpus"))
    assert names == ["part-00000-of-00002.txt", "part-00001-of-00002.txt"]
    stats = json.load(open(os.path.join(data, "corpus-stats.json")))
    per_package = stats["debian_es"]["packages"]
    assert sorted(per_package) == sorted(SUBSET.split(","))
    assert all(p["lines"] > 1000 for p in per_package.values()), per_package
    assert stats["lines"] == sum(p["lines"] for p in per_package.values())
    assert "held-out sentences (not in the corpus) in %s" % os.path.join(
        data, "corpus-heldout.txt") in first.stdout
    record = json.load(open(os.path.join(data, ".stages", "corpus.done")))
    versions = text_packages.installed_versions(SUBSET.split(","))
    assert record["vars"]["debian-es packages"]["packages"] == [
        [p, versions[p]] for p in SUBSET.split(",")]
    assert "corpus: up to date" in again.stdout


def test_duplicates_dropped_and_held_out_sentences_absent(make_built):
    data = make_built[0]
    lines = [l for t in read_parts(os.path.join(data, "corpus"))[1] for l in t.split("\n") if l]
    assert len(lines) == len(set(lines))
    raw = collections.Counter(
        l.strip() for path in debian_corpus.files_of(text_packages.DEBIAN_ES[0])
        for l in open(path, encoding="utf-8") if l.strip() not in ("", "%"))
    assert max(raw.values()) > 1                  # the fortunes do repeat lines
    heldout = [l for l in lines_of(os.path.join(data, "corpus-heldout.txt")) if l]
    assert len(heldout) > 100 and not set(heldout) & set(lines)
    held_pages = [path for e in debian_corpus.selection("debian-es=" + SUBSET)
                  for path in debian_corpus.files_of(e) if debian_corpus.is_heldout(path, e.kind)]
    assert any(p.startswith(ROOTS["manpages-es"] + "/") for p in held_pages)
    page_lines = [l for p in held_pages
                  for d in debian_corpus.extract((p, "man" if p.endswith(".gz") else "html"))
                  for l in d]
    assert set(heldout) == set(page_lines)


def test_two_builds_are_byte_identical(make_built, tmp_path):
    data = make_built[0]
    other = str(tmp_path / "other")
    module("corpus", "--data-dir", other, "--corpus", "debian-es=" + SUBSET, "--num-files", "2",
           "--train-size", "10000000")
    for name in ("corpus/part-00000-of-00002.txt", "corpus/part-00001-of-00002.txt",
                 "corpus-heldout.txt", ".cache/debian-es/corpus.txt"):
        assert open(os.path.join(data, name), "rb").read() == \
            open(os.path.join(other, name), "rb").read(), name


def test_ci_installs_the_packages_the_tests_read():
    with open(os.path.join(REPO, ".ci", "run"), encoding="utf-8") as f:
        words = f.read().split("CI_TEXT_PACKAGES=\"", 1)[1].split("\"", 1)[0].split()
    assert tuple(words) == text_packages.TEST_PACKAGES


def test_docker_run_builds_debian_es_inside_the_image(tmp_path):
    """CORPUS=debian-es names no host path: forwarded as it is, nothing mounted for it."""
    environ = {"DATA_DIR": str(tmp_path), "CORPUS": "debian-es", "TARGET": "corpus",
               "PIPELINE_GIVEN": "CORPUS"}
    argv = pipeline.docker_command(pipeline.read_settings(environ), environ, tty=False)
    assert "CORPUS=debian-es" in argv
    assert not any("/workspace/corpus" in a for a in argv)


# ---- missing packages, bad selection -----------------------------------------------------------

def test_missing_packages_without_apt_stop_with_the_command(tmp_path, monkeypatch, capsys):
    """Packages really missing (roots that do not exist) and no apt-get on PATH: one line,
    exit 2, the command to run and the way out."""
    absent = text_packages.DebianText("manpages-es", "man", str(tmp_path / "man"), "*.gz")
    monkeypatch.setattr(text_packages, "DEBIAN_ES", (absent,))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: debian_corpus.main(["--data-dir", str(tmp_path / "d")]),
                 program="debian_corpus")
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    assert err.startswith("debian_corpus: error: CORPUS=debian-es needs Debian's Spanish text "
                          "(manpages-es) and this machine has no apt-get; on Debian or Ubuntu "
                          "run 'sudo apt-get install manpages-es', or build from the installed "
                          "ones: CORPUS=debian-es=PACKAGE,PACKAGE")
    assert len(err.strip().splitlines()) == 1 and out == ""
    assert not os.path.exists(str(tmp_path / "d" / ".cache"))


def test_missing_packages_as_a_user_stop_even_when_some_are_present():
    action, packages, message = text_packages.decide(
        ["gimp-help-es"], ["fortunes-es"], is_root=False, has_apt=True,
        user="CORPUS=debian-es", partial_ok=False, way_out="or fewer")
    assert (action, packages) == ("stop", [])
    assert message == ("CORPUS=debian-es needs Debian's Spanish text (gimp-help-es), which is "
                       "not installed; run 'sudo apt-get install gimp-help-es' and make again, "
                       "or fewer")


def test_an_unknown_package_is_refused_in_one_line(tmp_path):
    proc = run(MAKE + ["corpus", "DATA_DIR=%s" % tmp_path, "CORPUS=debian-es=fortunes-es,nope"],
               check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "corpus: error: CORPUS=debian-es=fortunes-es,nope: unknown package nope; choose " \
           "among fortunes-es,debian-reference-es" in proc.stderr
