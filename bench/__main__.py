"""Run every benchmark module (bench/bench_*.py) in turn: `python -m bench [NAME ...]`."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time

import bench


def main(argv: list[str]) -> int:
    """Import each bench_* module and call its `main()`; a name filter may be given."""
    names = sorted(
        m.name for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_")
    )
    if argv:
        names = [n for n in names if any(arg in n for arg in argv)]
    failed = 0
    for name in names:
        print(f"=== {name}", flush=True)
        started = time.perf_counter()
        module = importlib.import_module(f"bench.{name}")
        try:
            module.main()
        except Exception as exc:  # one failing benchmark must not hide the others' figures
            failed += 1
            print(f"!!! {name} failed: {exc!r}", flush=True)
        print(f"=== {name} took {time.perf_counter() - started:.1f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
