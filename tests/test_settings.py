"""One home per setting: wrapper/settings.py's table. The Makefile's defaults (settings.mk),
`make help`, the README's table and every stage command's defaults are made from it, and agree
with it when Make and the commands themselves are asked."""
import argparse
import os
import re
import subprocess

import pytest

from conftest import REPO
from wrapper import settings

README_BEGIN = "<!-- settings:begin -->"
README_END = "<!-- settings:end -->"


def make(*args, **environ):
    """make with none of the user's settings in its environment, only `environ`."""
    env = {k: v for k, v in os.environ.items()
           if k not in settings.USER_VARS and k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    env.update(environ)
    return subprocess.run(["make", "--no-print-directory", "-C", REPO] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, env=env, check=True).stdout


def test_settings_mk_is_what_the_table_makes():
    with open(os.path.join(REPO, "settings.mk"), encoding="utf-8") as f:
        committed = f.read()
    assert committed == settings.settings_mk(), \
        "settings.mk is stale: python -m wrapper.settings make > settings.mk"


def test_readme_settings_table_is_generated():
    """The README's table of variables, between its markers, is `python -m wrapper.settings
    readme`'s output."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        text = f.read()
    assert README_BEGIN in text and README_END in text, "README.md lacks the settings markers"
    region = text.split(README_BEGIN, 1)[1].split(README_END, 1)[0]
    printed = subprocess.run([os.path.join(REPO, ".venv", "bin", "python"), "-m",
                              "wrapper.settings", "readme"], cwd=REPO, check=True,
                             stdout=subprocess.PIPE, universal_newlines=True).stdout
    assert region.strip("\n") == printed.strip("\n"), \
        "README.md's settings table is stale: paste python -m wrapper.settings readme"


def shown_values(**given):
    """{NAME: value} `make help` shows with `given` on its command line."""
    lines = make("-s", "help", *("%s=%s" % kv for kv in given.items())).splitlines()
    shown = {}
    for line in lines:
        match = re.match(r"  ([A-Z][A-Z_0-9]*)=", line)
        if match:
            shown[match.group(1)] = line[match.end():]
    return shown


@pytest.mark.parametrize("given", [{}, {"PRESET": "electra-small-1m"}, {"IMAGE": "ngc"},
                                   {"IMAGE": "torch", "DATA_DIR": "/srv/d"}])
def test_make_and_make_help_have_the_tables_defaults(given):
    """Make evaluates each default (those that follow PRESET, IMAGE, DATA_DIR too) as the
    table does, and make help shows it, one line per setting, in the table's order."""
    expected = settings.values(given, settings.USER_VARS)
    shown = shown_values(**given)
    assert list(shown) == list(settings.USER_VARS)
    for s in settings.SETTINGS:
        value = expected[s.name] or s.example
        meaning = shown[s.name][len(value):].strip()
        assert shown[s.name].startswith(value) and meaning == s.help, (s.name, shown[s.name])


def test_make_help_needs_no_python():
    """make help works on a fresh machine: its recipe runs awk over settings.mk, nothing
    else."""
    recipe = make("-n", "help")
    assert "python" not in recipe and "settings.mk" in recipe


def test_make_passes_the_tables_defaults_to_the_stages(tmp_path):
    """Under make, with nothing given, the stages' commands get the table's defaults."""
    dry = make("-n", "corpus", "vocab", "hparams", "DATA_DIR=%s" % tmp_path)
    expected = settings.values({})
    for flag, name in (("--train-size", "TRAIN_SIZE"), ("--num-files", "NUM_PROCESSES"),
                       ("--vocab", "VOCAB"), ("--vocab-size", "VOCAB_SIZE"),
                       ("--preset", "PRESET"), ("--model-name", "MODEL_NAME")):
        assert " %s=%s " % (flag, expected[name]) in dry.replace("\n", " "), (flag, dry)


def parser_defaults(main, argv):
    """{option dest: default} of the parser a command's main() builds (stopped before it runs:
    argparse's own parse step is where it is caught)."""
    seen = {}
    original = argparse.ArgumentParser.parse_args

    def capture(self, args=None, namespace=None):
        seen.update({a.dest: a.default for a in self._actions})
        raise StopIteration
    argparse.ArgumentParser.parse_args = capture
    try:
        with pytest.raises(StopIteration):
            main(argv)
    finally:
        argparse.ArgumentParser.parse_args = original
    return seen


def test_stage_commands_take_the_tables_defaults():
    from wrapper import conformance, corpus, hparams, vocab
    expected = settings.values({})
    for main, options in (
            (corpus.main, {"corpus": "CORPUS", "train_size": "TRAIN_SIZE",
                           "num_files": "NUM_PROCESSES", "download_bytes": "DOWNLOAD_BYTES",
                           "corpus_encoding": "CORPUS_ENCODING"}),
            (vocab.main, {"vocab": "VOCAB", "vocab_size": "VOCAB_SIZE"}),
            (hparams.main, {"preset": "PRESET", "overrides": "HPARAMS_OVERRIDES",
                            "model_name": "MODEL_NAME", "num_gpus": "NUM_GPUS"}),
            (conformance.parse_args, {"backend": "BACKEND"})):
        defaults = parser_defaults(main, [])
        for dest, name in options.items():
            assert defaults[dest] == expected[name], (main.__module__, dest, defaults[dest])


def test_evaluate_takes_the_tables_defaults():
    """make evaluate's command runs in .venv-modern: asked there."""
    code = ("import sys; sys.argv = ['x', '--help']\n"
            "import argparse\n"
            "from wrapper import evaluate\n"
            "seen = {}\n"
            "def capture(self, args=None, namespace=None):\n"
            "    seen.update({a.dest: a.default for a in self._actions}); raise SystemExit(0)\n"
            "argparse.ArgumentParser.parse_args = capture\n"
            "try:\n    evaluate.parse_args([])\nexcept SystemExit:\n    pass\n"
            "print(repr((seen['model'], seen['seeds'], seen['task_data'])))\n")
    out = subprocess.run([os.path.join(REPO, ".venv-modern", "bin", "python"), "-c", code],
                         cwd=REPO, check=True, stdout=subprocess.PIPE,
                         universal_newlines=True).stdout
    expected = settings.values({})
    assert out.strip() == repr((expected["MODEL"], expected["SEEDS"], expected["TASK_DATA"]))


def test_a_computed_default_follows_its_setting_in_python_too():
    assert settings.values({"PRESET": "electra-small-1m"})["VOCAB"] == "train"
    assert settings.values({})["VOCAB"] == "mbert"
    assert settings.default("DEMO_DATA_DIR", {"DATA_DIR": "/x"}) == "/x/demo"
    assert settings.values({"IMAGE": "torch"}, ["DOCKER_IMAGE"])["DOCKER_IMAGE"].startswith(
        "electra-spanish:torch")
    # What the environment holds, empty included, is what Make would pass on.
    assert settings.values({"VOCAB": ""})["VOCAB"] == ""


def test_every_reader_named_is_a_make_target():
    with open(os.path.join(REPO, "Makefile"), encoding="utf-8") as f:
        targets = set(re.findall(r"^([a-z0-9-]+):", f.read(), re.M))
    for s in settings.SETTINGS:
        assert set(s.stages) <= targets, (s.name, set(s.stages) - targets)
        assert "$" not in str(s.default) and "#" not in str(s.default), s.name


def test_presets_hold_training_hparams_only():
    """A preset's keys are hparams of the trainer (or notes): the published vocab size, which
    follows from PRESET, is VOCAB_SIZE's default."""
    from wrapper.electra import configure_pretraining
    for name in settings.preset_names():
        path = settings.preset_path(name)
        hparams = configure_pretraining.parse_json(open(path, encoding="utf-8").read(), path)
        configure_pretraining.check_hparams(
            {k: v for k, v in hparams.items() if not k.startswith("_")})
        assert [k for k in hparams if k.startswith("_")] in ([], ["_about"]), name
    assert settings.preset_vocab_size("electra-small-1m") == 50265
    assert settings.preset_vocab_size("tutorial") is None
