"""A stage runner for tests: `python tests/stage_runner.py STAGE DATA_DIR [OUTPUT] -- COMMAND...`
runs COMMAND as the stage STAGE through stages.run_stage (and so supervise.run_commands), as
wrapper/pipeline.py runs a Make stage, with a command of the test's own choosing.

(No tests here: pytest collects nothing from it.)
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wrapper import stages  # noqa: E402
from wrapper.cli import run_main  # noqa: E402


def main():
    cut = sys.argv.index("--")
    own, command = sys.argv[1:cut], sys.argv[cut + 1:]
    stage, data_dir, outputs = own[0], own[1], own[2:]
    return stages.run_stage(stage, data_dir, [], {}, outputs, None, [command])


if __name__ == "__main__":
    run_main(main, "stages")
