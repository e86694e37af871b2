"""The report of ``make mutants`` (docs/quality.md): mutmut's results per module.

Reads ``mutmut results --all true`` on standard input (one ``name: status`` line per
mutant) and prints, per module of ``domain/``, how many mutants were killed and the
score, then the survivors' names (``mutmut show NAME`` prints a survivor's diff).
Mutants listed in docs/quality.md as equivalent (nothing observable changes) are
counted apart: the score is of the others.
"""

from __future__ import annotations

import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

QUALITY = Path(__file__).resolve().parent.parent / "docs" / "quality.md"
_NAME = re.compile(r"^\s*(?P<name>[\w.ǁ]+__mutmut_\d+): (?P<status>.+)$")
_EQUIVALENT = re.compile(r"^- `(?P<name>[\w.ǁ]+__mutmut_\d+)`", re.MULTILINE)


def module_of(mutant: str) -> str:
    """``rollcall.domain.rules.x_f__mutmut_3`` and
    ``rollcall.domain.training.xǁTrainingǁf__mutmut_1`` are of ``rollcall.domain.rules``
    and ``rollcall.domain.training``."""
    return mutant.split(".x", 1)[0]


def equivalent() -> set[str]:
    """The mutants docs/quality.md explains as changing nothing observable."""
    if not QUALITY.exists():
        return set()
    return {m["name"] for m in _EQUIVALENT.finditer(QUALITY.read_text())}


def report(lines: list[str], explained: set[str]) -> tuple[str, list[str]]:
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    survivors = []
    for line in lines:
        found = _NAME.match(line)
        if not found:
            continue
        name, status = found["name"], found["status"].strip()
        if status == "survived" and name in explained:
            status = "equivalent"
        counts[module_of(name)][status] += 1
        if status == "survived":
            survivors.append(name)
    heads = ("mutants", "killed", "survived", "no tests", "equiv.", "not run", "score")
    widths = (7, 7, 8, 8, 6, 7, 7)
    rows = [f"{'module':<20} " + " ".join(f"{h:>{w}}" for h, w in zip(heads, widths, strict=True))]
    total: Counter[str] = Counter()
    for module in sorted(counts):
        rows.append(_row(module, counts[module]))
        total.update(counts[module])
    rows.append(_row("all", total))
    return "\n".join(rows), survivors


def _row(module: str, count: Counter[str]) -> str:
    """A module's mutants: killed (a test failed, timed out or the types caught it),
    survived, reached by no test, explained as equivalent, not run yet; the score is
    killed over those judged (run, and not equivalent): no tests counts against it."""
    mutants = sum(count.values())
    killed = count["killed"] + count["timeout"] + count["caught by type check"]
    survived, untested = count["survived"], count["no tests"]
    equivalent, pending = count["equivalent"], count["not checked"]
    judged = killed + survived + untested
    score = f"{100 * killed / judged:.1f}%" if judged else "-"
    return (
        f"{module:<20} {mutants:>7} {killed:>7} {survived:>8} {untested:>8} "
        f"{equivalent:>6} {pending:>7} {score:>7}"
    )


def main() -> int:
    table, survivors = report(sys.stdin.read().splitlines(), equivalent())
    print(table)
    print(f"\n{len(survivors)} survivors (mutmut show NAME prints the change):")
    for name in survivors:
        print(f"  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
