"""What a provider batch job remembers across a crash: its lines, files and batches.

The state is a small JSON file (written whole, then renamed over the old one, so a kill
leaves the old or the new, never half of one) beside a folder of the JSONL parts uploaded.
It names the job (a random id that the uploaded files and the batches carry in their name
and metadata, so a part whose upload or creation was under way at a kill is found at the
provider instead of made twice), the requests it was made for (a digest of every line), and
for every part its file id, batch id and whether its answers were read.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

__all__ = ["STATE_FORMAT", "JobState", "Part"]

STATE_FORMAT = 1


@dataclass
class Part:
    """One uploaded file and the batch made from it.

    Attributes:
        name: The file's name at the provider (carries the job id).
        lines: Lines in the file.
        file_id: The provider's file id, once uploaded.
        batch_id: The provider's batch id, once created.
        ended: The batch's final status once read (``completed``, ``expired``, ...).
    """

    name: str
    lines: int
    file_id: str | None = None
    batch_id: str | None = None
    ended: str | None = None


@dataclass
class JobState:
    """A provider batch job's record; see the module docstring.

    Attributes:
        job: The job's random id.
        model: The bound model.
        provider: litellm's provider name.
        endpoint: The Batch API endpoint of every line.
        digest: SHA-256 of every request's line, in input order.
        count: Requests in the job.
        rounds: Parts per round; round 0 holds every request not answered by a cache, a
            later round the lines an expired or cancelled batch left unanswered.
    """

    job: str
    model: str
    provider: str
    endpoint: str
    digest: str
    count: int
    rounds: list[list[Part]] = field(default_factory=lambda: [])

    @classmethod
    def new(cls, model: str, provider: str, endpoint: str, digest: str, count: int) -> JobState:
        """A fresh record with a new job id."""
        return cls(uuid.uuid4().hex[:16], model, provider, endpoint, digest, count)

    @classmethod
    def load(cls, path: Path) -> JobState | None:
        """The record at ``path``, or None when there is none.

        Raises:
            ValueError: The file is not a provider batch state of this version.
        """
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            data = cast("dict[str, Any]", json.loads(text))
            if data.get("format") != STATE_FORMAT:
                msg = f"unknown format {data.get('format')!r}"
                raise ValueError(msg)
            rounds = [[Part(**part) for part in parts] for parts in data["rounds"]]
            return cls(
                job=str(data["job"]),
                model=str(data["model"]),
                provider=str(data["provider"]),
                endpoint=str(data["endpoint"]),
                digest=str(data["digest"]),
                count=int(data["count"]),
                rounds=rounds,
            )
        except (ValueError, KeyError, TypeError) as exc:
            msg = f"{path} is not a provider batch state file ({exc})"
            raise ValueError(msg) from exc

    def save(self, path: Path) -> None:
        """Write the record to ``path``, atomically."""
        data: dict[str, Any] = {"format": STATE_FORMAT, **asdict(self)}
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(data, indent=1), encoding="utf-8")
        with temporary.open("rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)

    def part_path(self, path: Path, part: Part) -> Path:
        """Where the part's JSONL file is kept beside the state file."""
        return parts_folder(path) / part.name


def parts_folder(path: Path) -> Path:
    """The folder of a state file's uploaded parts."""
    return path.with_name(f"{path.name}.parts")
