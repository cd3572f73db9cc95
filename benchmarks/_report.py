"""What a benchmark section gets, what it returns, and how the results become markdown."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RunConfig:
    """Settings every section receives.

    Attributes:
        quick: Run everything small (seconds, for the test command) and check no bars.
        seed: Seed of the random orders used to interleave contenders.
    """

    quick: bool = False
    seed: int = 0


@dataclass(frozen=True)
class Check:
    """One bar: a named condition a measured value must meet in full mode.

    Attributes:
        name: What was checked.
        passed: Whether the measured value met the bar.
        within_noise: The measurement's confidence interval contains the bar, so this run
            cannot tell a pass from a fail.
    """

    name: str
    passed: bool
    within_noise: bool = False

    @property
    def verdict(self) -> str:
        """``PASS`` or ``FAIL``, marked when the result is within the noise."""
        word = "PASS" if self.passed else "FAIL"
        return f"{word} (within noise)" if self.within_noise else word


@dataclass
class Table:
    """A table of strings; each row has one cell per header."""

    headers: tuple[str, ...]
    rows: list[tuple[str, ...]] = field(default_factory=list[tuple[str, ...]])
    title: str = ""

    def add(self, *cells: str) -> None:
        """Append a row."""
        if len(cells) != len(self.headers):
            msg = f"row has {len(cells)} cells, the table has {len(self.headers)} columns"
            raise ValueError(msg)
        self.rows.append(cells)


@dataclass
class SectionResult:
    """Everything one section reports: tables, notes, and the bars it checked."""

    title: str
    tables: list[Table] = field(default_factory=list[Table])
    notes: list[str] = field(default_factory=list[str])
    checks: list[Check] = field(default_factory=list[Check])
    seconds: float = 0.0

    def bar(self, config: RunConfig, name: str, passed: bool, *, within_noise: bool = False) -> str:
        """Record a bar (in full mode) and return the cell that shows its verdict."""
        if config.quick:
            return "not checked (quick)"
        check = Check(name, passed, within_noise)
        self.checks.append(check)
        return check.verdict


def render_table(table: Table) -> str:
    """A table as GitHub-flavoured markdown, with its title (if any) above it."""
    lines = [f"**{table.title}**", ""] if table.title else []
    lines.append("| " + " | ".join(table.headers) + " |")
    lines.append("|" + "|".join("---" for _ in table.headers) + "|")
    lines.extend(
        "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in table.rows
    )
    return "\n".join(lines)


def render_section(section: SectionResult) -> str:
    """One section as markdown: heading, tables, then notes."""
    parts = [f"## {section.title}", f"_{section.seconds:.1f} s_"]
    parts.extend(render_table(table) for table in section.tables)
    if section.notes:
        parts.append("\n".join(f"- {note}" for note in section.notes))
    return "\n\n".join(parts)


def render_report(title: str, facts: Sequence[tuple[str, str]], sections: Sequence[str]) -> str:
    """The whole report: a title, a list of facts about the run, and the rendered sections."""
    head = "\n".join([f"# {title}", "", *(f"- {key}: {value}" for key, value in facts)])
    return "\n\n".join([head, *sections]) + "\n"
