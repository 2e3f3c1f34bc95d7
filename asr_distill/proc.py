"""Child processes that die with their parent.

A pipeline or a multi-worker labeling job killed with ``kill -9`` must not leave a
child running on: it would hold its output lock and make the resumed job refuse.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def tie_to_parent(parent: int) -> None:
    """Ask Linux to SIGKILL this process when ``parent`` dies (call it in the child).

    Usable as a ``subprocess`` ``preexec_fn`` (``functools.partial(tie_to_parent, os.getpid())``)
    or first thing in a spawned worker.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: orphans then finish their work and exit
        log.debug("PR_SET_PDEATHSIG unavailable; children outlive a killed parent")
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
