#!/usr/bin/python3
"""Run the shared harness's bench.py with rampmail's adapters registered.

bench.py has no hook for extra adapter modules, and the harness is
read-only, so this launcher imports the harness's own modules from their
folder (BENCH_HARNESS, default ../../shared/bench from here), imports
rampmail_adapters (which registers more @adapter functions in the
harness's `adapters` module) and calls bench.main().  Every option is
bench.py's; without --subjects the harness's default subjects plus
rampmail's are run.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
HARNESS = os.environ.get("BENCH_HARNESS") or os.path.normpath(
    os.path.join(HERE, "..", "..", "shared", "bench"))
RAMPMAIL_SUBJECTS = "rampmail,rampmail-bg,rampmail-odq"

sys.dont_write_bytecode = True         # no __pycache__ in either tree
sys.path.insert(0, HARNESS)
sys.path.insert(1, HERE)
import bench  # noqa: E402  (the harness: ../shared/bench/bench.py)
import rampmail_adapters  # noqa: E402,F401  (registers the rampmail subjects)

if __name__ == "__main__":
    bench.DEFAULT_SUBJECTS = bench.DEFAULT_SUBJECTS + "," + RAMPMAIL_SUBJECTS
    bench.main()
