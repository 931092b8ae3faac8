"""Named points in the order lifecycle where a test can kill the process (`FARMCTL_CRASH_AT`).

Production never sets the variable; the crash tests set it to one step name to prove that a
process killed exactly there restarts without a duplicate order and with a ledger that
matches the venue.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)

CRASH_ENV = "FARMCTL_CRASH_AT"
STEPS = (
    "before_intent",
    "after_intent",
    "after_sent_mark",
    "after_venue_accept",
    "after_ledger_update",
    "after_cancel",
    "after_recover",
)


def crash_point(step: str) -> None:
    """Exit at once with status 137 (as SIGKILL would) when FARMCTL_CRASH_AT names `step`."""
    if os.environ.get(CRASH_ENV) == step:
        logger.critical("crash point reached step=%s: exiting as if killed", step)
        logging.shutdown()
        os._exit(137)
