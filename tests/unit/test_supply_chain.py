"""The published requirements never admit a release on the project's known-bad list.

constraints/known-bad.txt lists releases that must never be installed with fixedmodel (with
the sources that condemn them). The requirements users get are checked twice: as written in
pyproject.toml and as published in the installed package's metadata; the CI locks are
checked too, and must pin every package with hashes.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).parents[2]
KNOWN_BAD = ROOT / "constraints" / "known-bad.txt"
LOCKS = [ROOT / "constraints" / "ci.lock", ROOT / "constraints" / "lowest.lock"]
PINS = ROOT / "constraints" / "ci.txt"  # ci.lock without hashes, for pip's -c


def _known_bad() -> list[tuple[str, Version]]:
    bad: list[tuple[str, Version]] = []
    for line in KNOWN_BAD.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            bad.append((canonicalize_name(name), Version(version)))
    return bad


def _pyproject_requirements() -> list[str]:
    if sys.version_info >= (3, 11):
        import tomllib

        project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
        found = list(project["dependencies"])
        for extra in project.get("optional-dependencies", {}).values():
            found += extra
        return found
    # Python 3.10 has no tomllib: read the dependency arrays' quoted items.
    text = (ROOT / "pyproject.toml").read_text()
    return re.findall(r'^\s*"([A-Za-z0-9_.\-\[\],]+[^"]*)",?\s*$', text, flags=re.MULTILINE)


def _admitted(requirements: list[str]) -> list[str]:
    bad = _known_bad()
    admitted: list[str] = []
    for text in requirements:
        requirement = Requirement(text)
        for name, version in bad:
            if canonicalize_name(requirement.name) == name and requirement.specifier.contains(
                version, prereleases=True
            ):
                admitted.append(f"{text!r} admits {name}=={version}")
    return admitted


def test_the_known_bad_list_is_not_empty_and_well_formed() -> None:
    bad = _known_bad()
    assert ("litellm", Version("1.82.7")) in bad
    assert ("litellm", Version("1.82.8")) in bad


def test_the_check_catches_a_range_that_admits_a_known_bad_release() -> None:
    assert _admitted(["litellm>=1.80,<2"]) != []
    assert _admitted(["litellm>=1.80,<2,!=1.82.7,!=1.82.8"]) == []


def test_pyproject_requirements_admit_no_known_bad_release() -> None:
    requirements = _pyproject_requirements()
    assert any(Requirement(text).name == "litellm" for text in requirements)
    assert _admitted(requirements) == []


def test_published_metadata_admits_no_known_bad_release() -> None:
    requirements = metadata.requires("fixedmodel") or []
    assert any(Requirement(text).name == "litellm" for text in requirements)
    assert _admitted(requirements) == []


@pytest.mark.parametrize("lock", LOCKS, ids=lambda path: path.name)
def test_ci_locks_pin_hashes_and_no_known_bad_release(lock: Path) -> None:
    text = lock.read_text()
    pins = re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s\\]+)", text, flags=re.MULTILINE)
    assert len(pins) > 20
    assert dict((canonicalize_name(n), v) for n, v in pins).get("litellm") is not None
    for name, version in pins:
        assert (canonicalize_name(name), Version(version)) not in _known_bad(), name
    entries = re.split(r"^(?=[A-Za-z0-9_.\-]+==)", text, flags=re.MULTILINE)[1:]
    assert all("--hash=sha256:" in entry for entry in entries)


def _pins(path: Path) -> dict[str, str]:
    found = re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s\\]+)", path.read_text(), flags=re.MULTILINE)
    return {canonicalize_name(name): version for name, version in found}


def test_the_plain_pins_are_the_locks_pins() -> None:
    assert _pins(PINS) == _pins(LOCKS[0])
    assert "--hash" not in PINS.read_text()


def test_lowest_lock_pins_the_floor_of_the_declared_litellm_range() -> None:
    requirements = [Requirement(text) for text in metadata.requires("fixedmodel") or []]
    (litellm,) = [r for r in requirements if r.name == "litellm" and r.marker is None]
    floors = [Version(s.version) for s in litellm.specifier if s.operator == ">="]
    lowest = re.search(r"^litellm==(\S+)", LOCKS[1].read_text(), flags=re.MULTILINE)
    assert lowest is not None
    assert floors == [Version(lowest.group(1))]
    newest = re.search(r"^litellm==(\S+)", LOCKS[0].read_text(), flags=re.MULTILINE)
    assert newest is not None
    assert litellm.specifier.contains(newest.group(1))
