#!/usr/bin/env bash
# The whole check: lint, format, types (mypy --strict, pyright strict), tests, docs build and the
# quick benchmark. Creates .venv on first run; needs only Python 3.10+ and the package registries.
set -euo pipefail
cd "$(dirname "$0")/.."
export LITELLM_LOCAL_MODEL_COST_MAP=True
export NO_MKDOCS_2_WARNING=1

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
python -m pip install --quiet -e '.[dev]' -c constraints/ci.txt

# The Redis tests need a real redis-server binary on this machine.
if ! command -v redis-server >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) >/dev/null
    fi
fi

echo "== ruff"
ruff check .
ruff format --check .
echo "== mypy --strict"
mypy
echo "== pyright (strict)"
pyright
echo "== pytest"
set +e
python -X dev -m pytest -p no:cacheprovider -q
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: failing" >&2
    exit 1
fi
[ "$status" -eq 0 ] || exit "$status"
echo "== benchmarks (quick: checks they run, enforces no bar)"
python benchmarks/run.py --quick --output "$(mktemp -d)/quick.md" >/dev/null
echo "== docs"
mkdocs build --strict --quiet --site-dir "$(mktemp -d)"
echo "== all checks passed"
