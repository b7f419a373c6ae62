"""The session tally of the reliability suite (printed by conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Tally:
    faults_injected: int = 0
    crashes_survived: int = 0
    bad_inputs_tried: int = 0
    parser_inputs_fuzzed: int = 0
    rows_lost: int = 0
    secrets_leaked: int = 0

    def lines(self) -> list[str]:
        return [
            f"faults injected:  {self.faults_injected}",
            f"crashes survived: {self.crashes_survived}",
            f"bad inputs tried: {self.bad_inputs_tried}",
            f"parsers fuzzed:   {self.parser_inputs_fuzzed} inputs",
            f"rows lost:        {self.rows_lost} (must be 0)",
            f"secrets leaked:   {self.secrets_leaked} (must be 0)",
        ]


TALLY = Tally()
