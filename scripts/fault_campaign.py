"""Fault campaign: kill -9 at random points and resume, a second writer, read-only and full disks.

The campaign lives in ``asr_distill.testing.fault_campaign`` (tests and benchmarks import
it); this script runs it, as ``python -m asr_distill.testing.fault_campaign`` does:

    python scripts/fault_campaign.py --kills 5 --copies 6 --json /tmp/campaign.json
    python scripts/fault_campaign.py --targets run train --kills 5
"""

from __future__ import annotations

import sys

from asr_distill.testing.fault_campaign import main

if __name__ == "__main__":
    sys.exit(main(prog="python scripts/fault_campaign.py"))
