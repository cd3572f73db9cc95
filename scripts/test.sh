#!/usr/bin/env bash
# The whole check: lint, format, types (mypy --strict, pyright strict), tests, docs build and the
# quick benchmark, at the newest litellm the declared range admits; then the tests again (all
# but those marked heavy) at the lowest one (the floor of pyproject.toml's litellm range).
# Creates .venv and .venv-lowest on first run; needs only Python 3.10+ and the package registries.
#
# Installs are hash-locked and reproducible: every package comes from a lock with sha256 hashes
# (constraints/ci.lock, constraints/lowest.lock; see constraints/README.md for how they are made),
# installed with --require-hashes, then the project itself with --no-deps and no build isolation
# (its build backend is in the lock too).
set -euo pipefail
cd "$(dirname "$0")/.."
export LITELLM_LOCAL_MODEL_COST_MAP=True
export NO_MKDOCS_2_WARNING=1
export PIP_DISABLE_PIP_VERSION_CHECK=1

PYTHON="${PYTHON:-python3}"

# make_venv DIR LOCK: a virtualenv in DIR holding exactly LOCK and the project (editable).
make_venv() {
    if [ ! -x "$1/bin/python" ]; then
        "$PYTHON" -m venv "$1"
    fi
    "$1/bin/python" -m pip install --quiet --require-hashes -r constraints/pip.lock
    "$1/bin/python" -m pip install --quiet --require-hashes -r "$2"
    "$1/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e .
}

# run_pytest PYTHON [PYTEST ARGS...]: the test suite in two worker processes (pytest-xdist:
# most tests wait on servers, subprocesses and timers, so two share two cores well); collecting
# no test is a failure (exit 5).
run_pytest() {
    local python="$1"
    shift
    set +e
    "$python" -X dev -m pytest -p no:cacheprovider -q -n 2 "$@"
    local status=$?
    set -e
    if [ "$status" -eq 5 ]; then
        echo "pytest collected no tests: failing" >&2
        exit 1
    fi
    [ "$status" -eq 0 ] || exit "$status"
}

make_venv .venv constraints/ci.lock

# The Redis tests need a real redis-server binary on this machine.
if ! command -v redis-server >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) >/dev/null
    fi
fi

. .venv/bin/activate
echo "== litellm $(python -c 'import importlib.metadata as m; print(m.version("litellm"))') (newest admitted)"
echo "== ruff"
ruff check .
ruff format --check .
echo "== mypy --strict"
mypy
echo "== pyright (strict)"
pyright
echo "== pytest"
run_pytest python
echo "== benchmarks (quick: checks they run, enforces no bar)"
python benchmarks/run.py --quick --output "$(mktemp -d)/quick.md" >/dev/null
echo "== docs"
mkdocs build --strict --quiet --site-dir "$(mktemp -d)"
deactivate

make_venv .venv-lowest constraints/lowest.lock
lowest="$(.venv-lowest/bin/python -c 'import importlib.metadata as m; print(m.version("litellm"))')"
echo "== pytest at litellm $lowest (lowest admitted)"
# Its own PATH, so that the type-checker tests run the checkers of this venv. The tests marked
# heavy (examples and docs run in fresh interpreters, pytester, process pools, Dask, Ray) test
# fixedmodel's own plumbing and ran above; leaving them out here keeps the whole command
# under 15 minutes on 2 cores.
PATH="$PWD/.venv-lowest/bin:$PATH" run_pytest .venv-lowest/bin/python -m "not heavy"
echo "== all checks passed"
