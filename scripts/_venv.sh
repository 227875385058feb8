# Shared by scripts/demo and scripts/test: make .venv with Python 3.11+ and install mediabot into it
# with the extras named in $EXTRAS (set by the caller: sh's `.` takes no arguments).
set -eu
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "mediabot needs Python 3.11 or newer (found: $("$PY" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
target=.
[ -n "$EXTRAS" ] && target=".[$EXTRAS]"
stamp=".venv/.mediabot-installed-${EXTRAS:-base}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "installing mediabot into .venv (first run only) ..." >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$target"
  touch "$stamp"
fi
