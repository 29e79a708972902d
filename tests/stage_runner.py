"""A stage runner for tests: runs COMMAND as stage STAGE through stages.run_stage (and so
supervise.run_commands), as wrapper/pipeline.py runs a Make stage, with inputs, outputs and a
command of the test's own choosing:

    python tests/stage_runner.py STAGE DATA_DIR [--input PATH]... [--output PATH]...
                                 [--keeps DIR [--may-change KEY]...] -- COMMAND...

(No tests here: pytest collects nothing from it.)
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wrapper import stages  # noqa: E402
from wrapper.cli import run_main  # noqa: E402


def main():
    cut = sys.argv.index("--")
    parser = argparse.ArgumentParser()
    parser.add_argument("stage")
    parser.add_argument("data_dir")
    parser.add_argument("--input", action="append", default=[])
    parser.add_argument("--output", action="append", default=[])
    parser.add_argument("--keeps")
    parser.add_argument("--may-change", action="append", default=[])
    args = parser.parse_args(sys.argv[1:cut])
    return stages.run_stage(args.stage, args.data_dir, args.input, {}, args.output, args.keeps,
                            [sys.argv[cut + 1:]], tuple(args.may_change))


if __name__ == "__main__":
    run_main(main, "stages")
