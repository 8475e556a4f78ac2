"""Loaded by every Python process of a ``make run`` stack that a benchmark started with
``bench.ddb_tally.stack_env`` (this directory first on ``PYTHONPATH``): the process counts its
DynamoDB calls and units into ``$BENCH_DDB_TALLY_DIR/<pid>.json``. Without that variable it does
nothing; it never stops a process from starting."""

import os
import sys

if os.environ.get("BENCH_DDB_TALLY_DIR"):
    try:
        _root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        if _root not in sys.path:
            sys.path.append(_root)  # the stack runs from the repository; "" is not on sys.path yet
        from bench.ddb_tally import install_from_env

        install_from_env()
    except Exception as exc:  # a benchmark's counter must not take the stack down
        print(f"bench DynamoDB tally not installed: {exc!r}", file=sys.stderr)
