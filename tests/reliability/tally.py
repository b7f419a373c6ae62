"""The session tally of the reliability suite (printed by conftest.py)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field


@dataclass
class Tally:
    faults_injected: int = 0
    crashes_survived: int = 0
    bad_inputs_tried: int = 0
    parser_inputs_fuzzed: int = 0
    rows_lost: int = 0
    secrets_leaked: int = 0
    # seconds from killing a worker (or its pool process) to its stream advancing again
    recovery_seconds: list[float] = field(default_factory=list)

    def lines(self) -> list[str]:
        recovery = []
        if self.recovery_seconds:
            median = statistics.median(self.recovery_seconds)
            worst = max(self.recovery_seconds)
            recovery = [
                f"recoveries:       {len(self.recovery_seconds)} worker kills, kill to the "
                f"stream advancing: median {median:.1f}s, worst {worst:.1f}s (must be < 120s)"
            ]
        return [
            f"faults injected:  {self.faults_injected}",
            f"crashes survived: {self.crashes_survived}",
            f"bad inputs tried: {self.bad_inputs_tried}",
            f"parsers fuzzed:   {self.parser_inputs_fuzzed} inputs",
            f"rows lost:        {self.rows_lost} (must be 0)",
            f"secrets leaked:   {self.secrets_leaked} (must be 0)",
            *recovery,
        ]


TALLY = Tally()
