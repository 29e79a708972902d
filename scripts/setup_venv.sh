#!/usr/bin/env bash
# Create or refresh a virtual environment from a lock file of exact pins.
#   scripts/setup_venv.sh VENV LOCKFILE            Python 3.7 (TF 1.15 stack)
#   scripts/setup_venv.sh --modern VENV LOCKFILE   Python >= 3.10 (current transformers)
# Idempotent: VENV/.installed records the lock file's checksum; a second run with the same
# lock returns at once. PYTHON37=/path/to/python3.7 chooses the interpreter.
set -euo pipefail
modern=0
if [ "${1:-}" = "--modern" ]; then modern=1; shift; fi
venv=${1:?usage: setup_venv.sh [--modern] VENV LOCKFILE}
lock=${2:?usage: setup_venv.sh [--modern] VENV LOCKFILE}
stamp="$venv/.installed"
want=$(sha256sum "$lock" | cut -d' ' -f1)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ]; then
  echo "$venv is up to date with $lock"; touch "$stamp"; exit 0
fi

version_ok() {  # version_ok PYTHON MAJOR.MINOR-test-expression
  "$1" -c "import sys; sys.exit(0 if $2 else 1)" >/dev/null 2>&1
}

find_python37() {
  local c
  for c in "${PYTHON37:-}" "$(command -v python3.7 || true)" "$HOME"/.pyenv/versions/3.7.*/bin/python3.7; do
    [ -n "$c" ] && [ -x "$c" ] && version_ok "$c" "sys.version_info[:2] == (3, 7)" && { echo "$c"; return 0; }
  done
  return 1
}

find_python_modern() {
  local c
  # 3.11 first: the CPU build of torch this project pins is a cp311 wheel.
  for c in python3.11 python3.12 python3.10 python3; do
    c=$(command -v "$c" || true)
    [ -n "$c" ] && version_ok "$c" "sys.version_info[:2] >= (3, 10)" && { echo "$c"; return 0; }
  done
  return 1
}

if [ $modern = 1 ]; then
  py=$(find_python_modern) || { echo "setup-modern: no Python >= 3.10 found (python3.11, python3.12, python3.10 on PATH); install one, e.g. 'pyenv install 3.11'" >&2; exit 1; }
else
  if [ -n "${PYTHON37:-}" ] && ! version_ok "$PYTHON37" "sys.version_info[:2] == (3, 7)"; then
    echo "setup: PYTHON37=$PYTHON37 is not a Python 3.7 interpreter" >&2; exit 1
  fi
  py=$(find_python37) || { echo "setup: TensorFlow 1.15 needs Python 3.7 and none was found (tried \$PYTHON37, python3.7 on PATH, ~/.pyenv/versions/3.7.*). Current Debian and Ubuntu ship none: install one with pyenv ('pyenv install 3.7.16') and rerun, pass PYTHON37=/path/to/python3.7, or use the container instead: 'make docker-build', then 'make docker-run TARGET=demo GPU=0' on a CPU-only host (GPU=1, the default, for an NVIDIA GPU)." >&2; exit 1; }
fi

# A venv made by another interpreter (or a half-made one) is rebuilt, not patched.
if [ -x "$venv/bin/python" ] && ! "$venv/bin/python" -c "import sys; sys.exit(0 if sys.version_info[:2] == tuple(int(x) for x in '$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')'.split('.')) else 1)" 2>/dev/null; then
  echo "$venv was made by another Python; recreating it"; rm -rf "$venv"
fi
[ -x "$venv/bin/python" ] || { echo "creating $venv with $py"; "$py" -m venv "$venv"; }
rm -f "$stamp"
# pip first, at the lock's version: the one a new venv brings may not read every wheel's tags.
pip_pin=$(grep -E '^pip==' "$lock" || true)
if [ -n "$pip_pin" ]; then
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "$pip_pin"
fi
echo "installing $lock into $venv (exact pins, no other packages)"
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps -r "$lock"
"$venv/bin/python" -m pip check
echo "$want" > "$stamp"
echo "$venv ready"
