"""``fixedmodel batch --provider-batch``: the checked input through the provider's Batch API.

The job's state is ``OUTPUT.provider-batch.json`` (with its parts beside it) and the list of
the lines it was made for is ``OUTPUT.provider-batch.ids``. The records are written when the
job's answers are read back, all of them; a run killed before that leaves OUTPUT as it was
and ``--resume`` collects the same job (nothing uploaded or paid twice). Once a job is
collected, its state is kept as ``...json.done`` and, with ``--resume``, the lines still
without an answer (failed, or never written) go into a new job.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fixedmodel import _cli_input
from fixedmodel._cli_common import UsageError
from fixedmodel._cli_output import RecordWriter, answer_record, error_record, read_state

if TYPE_CHECKING:
    from fixedmodel._protocols import AFixedModelCompletion

__all__ = ["check", "check_job", "run", "state_path"]


def state_path(output: Path) -> Path:
    """Where the job for ``output`` keeps its state: beside the file it names.

    Symbolic links are followed, as for OUTPUT's lock: a run given a link and a later
    ``--resume`` given its target (or the other way) find the same job, not a second one.
    """
    return _beside(output, ".provider-batch.json")


def _ids_path(output: Path) -> Path:
    return _beside(output, ".provider-batch.ids")


def _beside(output: Path, suffix: str) -> Path:
    """The file ``suffix`` names beside the file OUTPUT names, links followed; or beside the
    link itself where a job started by an earlier release (which did not follow links) left
    it, so that an upgrade in the middle of a job collects it instead of paying for another."""
    real = Path(os.path.realpath(output))
    path = real.with_name(f"{real.name}{suffix}")
    given = output.with_name(f"{output.name}{suffix}")
    if given != path and not path.exists() and given.exists():
        return given
    return path


def check(args: argparse.Namespace) -> None:
    """Refuse options that cannot apply to a provider batch."""
    if args.max_cost is not None:
        msg = "--max-cost: a provider batch cannot stop part way; leave it out"
        raise UsageError(msg)
    if args.mock_response is not None:
        msg = "--mock-response: a provider batch has no mock; use the loopback test server"
        raise UsageError(msg)


def check_job(args: argparse.Namespace) -> None:
    """Refuse a run that would pay again for the provider batch job under way on OUTPUT.

    Called with OUTPUT's lock held: looked for before, the job of a ``--provider-batch``
    run holding the lock could start (and that run be killed) before this run took it.
    A ``--provider-batch`` run without ``--resume`` would start a second job over the
    first one's state; a live run (``--resume`` or not) would send every line of the job
    again, as they have no record in OUTPUT until the job is collected.
    """
    state = state_path(args.output)
    if not state.exists() or (args.provider_batch and args.resume):
        return
    if args.provider_batch:
        msg = (
            f"OUTPUT {args.output} has a provider batch job under way ({state}): "
            "pass --resume to collect it"
        )
    else:
        msg = (
            f"OUTPUT {args.output} has a provider batch job under way ({state}): pass "
            "--provider-batch --resume to collect it (a live run would send its lines again)"
        )
    raise UsageError(msg)


async def run(
    args: argparse.Namespace,
    chat: AFixedModelCompletion,
    body_model: str | None,
    writer: RecordWriter,
) -> bool:
    """Run (or collect) the provider batch job(s) of this OUTPUT, writing every record.

    Returns False when OUTPUT could not take the records: the job's state is then kept
    (and said so), and ``--resume`` collects the same job again without paying twice.

    Raises:
        UsageError: The list of the job's lines cannot be written beside OUTPUT (nothing
            was sent).
    """
    state = state_path(args.output)
    if state.exists():  # A job a killed run started: collect it, paying nothing again.
        ids = json.loads(_ids_path(args.output).read_text(encoding="utf-8"))
        if not await _job(args, chat, body_model, writer, set(ids)):
            return False
    done = read_state(args.output).answered  # Without --resume, OUTPUT is empty.
    wanted = {
        line.custom_id
        for line in _cli_input.lines(args.input, body_model)
        if line.custom_id not in done
    }
    if wanted:
        return await _job(args, chat, body_model, writer, wanted)
    return True


async def _job(
    args: argparse.Namespace,
    chat: AFixedModelCompletion,
    body_model: str | None,
    writer: RecordWriter,
    wanted: set[str],
) -> bool:
    from fixedmodel import provider_batch

    state = state_path(args.output)
    ids_file = _ids_path(args.output)
    lines = [line for line in _cli_input.lines(args.input, body_model) if line.custom_id in wanted]
    if not state.exists():
        try:
            ids_file.write_text(json.dumps([line.custom_id for line in lines]), encoding="utf-8")
        except OSError as error:  # before the job: nothing sent, nothing paid
            msg = f"OUTPUT: cannot write {ids_file}: {error.strerror}"
            raise UsageError(msg) from None
    requests: list[Any] = [line.request for line in lines]
    print(
        f"fixedmodel: provider batch job for {len(lines)} line(s); state {state} "
        "(Ctrl-C leaves it running: --resume collects it)",
        file=sys.stderr,
    )
    results = await provider_batch(
        chat,
        requests,
        state=state,
        ids=[line.custom_id for line in lines],
        poll_interval=args.poll_interval,
        progress=False if args.no_progress else None,
    )
    done = read_state(args.output).answered
    try:
        for result in results:
            if result.id in done:
                continue
            if result.error is None:
                writer.write(answer_record(result.id, result.response))
            else:
                writer.write(error_record(result.id, result.error))
    except OSError as error:  # a full disk, a file size limit: the job stays collectable
        print(
            f"fixedmodel: cannot write OUTPUT {args.output}: {error.strerror}: the job is "
            f"kept ({state}); run the same command with --resume once OUTPUT can be written "
            "to collect its answers (nothing is sent or paid again)",
            file=sys.stderr,
        )
        return False
    finished = state.with_name(f"{state.name}.done")
    state.replace(finished)
    ids_file.unlink(missing_ok=True)
    return True
