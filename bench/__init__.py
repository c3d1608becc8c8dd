"""Benchmarks: dcmtool beside its peers (DCMTK, GDCM, pynetdicom's apps, Orthanc), measured in
the same run.

Every case runs its compared commands interleaved (A B C A B C ...) so that machine noise hits
them all alike, discards the warm-up rounds, and reports the median, min and max of the rest,
the ratio of dcmtool's median to each peer's, and whether the case's targets are met.

Performance targets live here, never in timed tests. Plain Python standard library only.

    bench/run                       # every case, 15 runs after 2 warm-ups
    bench/run --case echo --runs 31
    bench/run --json results.json --strict
    bench/run --list                # the cases and the commands they compare
    bench/run --case serve-ingest   # a prefix before "-" selects a group of cases
    bench/run --case convert        # the transcoding cases, beside DCMTK and GDCM

Layout: ``harness`` (rows, targets, cases, interleaved timing), ``fixture`` (what a case sets
up: tools, test data, servers), ``orthanc`` (the bench's private Orthanc), ``report`` (the
table and the JSON), ``environment`` (what to time, on what), ``cli`` (arguments, main) and
one module per family of cases in ``bench.cases``. See bench/README.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Peers are started with the test suite's helpers, imported the way the tests import them
# (``support.processes``, ``support.orthanc``): both are standard library only.
_TEST_SUPPORT_ROOT = str(REPO / "tests")
if _TEST_SUPPORT_ROOT not in sys.path:
    sys.path.insert(0, _TEST_SUPPORT_ROOT)
