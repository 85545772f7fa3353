"""Errors of the inspection workflow, placed in the collector's exception tree.

They subclass the collector's own errors so the API layer maps them to gRPC status
codes without knowing about inspections::

    CollectorError                      (collector.errors)
    ├── NotFound
    │   ├── InspectionNotFound          no such inspection (or not visible to this user)
    │   └── PlanNotFound                no such plan (or not visible to this user)
    ├── FailedPrecondition
    │   └── InspectionStateError        the action does not apply in the current state
    ├── InvalidRequest                  (used as is: bad date, selector, reason, ...)
    └── ConfigError
        └── InspectionConfigError       the inspections YAML is invalid; names the key
"""

from __future__ import annotations

from collections.abc import Sequence

from collector.errors import ConfigError, FailedPrecondition, NotFound

__all__ = [
    "InspectionConfigError",
    "InspectionNotFound",
    "InspectionStateError",
    "PlanNotFound",
]


class InspectionNotFound(NotFound):
    """No inspection with this id, or the user may not see it (same answer on purpose)."""

    def __init__(self, inspection_id: int) -> None:
        self.inspection_id = inspection_id
        super().__init__(
            f"inspection {inspection_id} not found; list them with `aftercare inspections`"
        )


class PlanNotFound(NotFound):
    """No inspection plan with this id, or the user may not see it."""

    def __init__(self, plan_id: int) -> None:
        self.plan_id = plan_id
        super().__init__(
            f"inspection plan {plan_id} not found; list them with `aftercare inspection plans`"
        )


class InspectionStateError(FailedPrecondition):
    """An action the inspection's state does not allow, e.g. signing before publishing.

    The message says the state and what is possible now.
    """

    def __init__(
        self, inspection_id: int, state: str, action: str, possible: Sequence[str], hint: str = ""
    ) -> None:
        self.inspection_id = inspection_id
        self.state = state
        self.action = action
        self.possible = tuple(possible)
        message = f"inspection {inspection_id} is {state}; `{action}` does not apply"
        if hint:
            message += f": {hint}"
        allowed = ", ".join(f"`{p}`" for p in self.possible) or "nothing"
        super().__init__(f"{message} (possible now: {allowed})")


class InspectionConfigError(ConfigError):
    """The inspections configuration is invalid; ``key_path`` names the key."""

    def __init__(self, key_path: str, message: str, source: str = "") -> None:
        self.key_path = key_path
        self.detail = message
        where = f"{source}: " if source else ""
        key = f"{key_path}: " if key_path else ""
        super().__init__(f"{where}{key}{message}")
