"""Run every benchmark: ``python -m benchmarks [name ...]``."""

import sys

from benchmarks import export, fault, intake, load, map, owner

BENCHMARKS = {
    "owner": owner.main,
    "map": map.main,
    "export": export.main,
    "intake": intake.main,
    "load": load.main,
    "fault": fault.main,
}

if __name__ == "__main__":
    names = sys.argv[1:] or list(BENCHMARKS)
    for name in names:
        BENCHMARKS[name]()
