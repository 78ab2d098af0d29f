"""Run every benchmark at its smoke size: ``make bench-smoke`` (and ``.ci/run``, after the tests).

Every ``benchmarks/*.py`` whose name does not start with ``_`` is a benchmark, and each is run
as ``python benchmarks/NAME.py --smoke DIR/NAME`` (see ``_smoke.py``), one after another, each
with a time limit. Prints one line per script with its wall and CPU time (of it and every
process it waited for), the end of the log of any that failed, and a table of the timings;
exits non-zero if any failed. The scratch folder is removed
when every script passed (``--keep`` keeps it).

    .venv/bin/python benchmarks/_run_smoke.py [NAME ...] [--list] [--keep] [--timeout 600]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
ROOT = BENCHMARKS.parent
# Nothing may wait on the network: nothing listens on port 9 here, so the model hub is "unreachable" at once.
OFFLINE = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "1"}


def benchmark_scripts() -> list[Path]:
    """Every benchmark script: benchmarks/*.py, less the helpers (names starting with ``_``)."""
    return sorted(p for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_one(script: Path, scratch: Path, timeout: float) -> tuple[bool, float, float, Path]:
    """(passed, wall seconds, CPU seconds, log file) of one smoke run."""
    log = scratch / f"{script.stem}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUMIC_")} | OFFLINE | {"PYTHONUNBUFFERED": "1"}
    start, cpu = time.monotonic(), children_cpu_seconds()
    with open(log, "w") as fh:
        try:
            passed = (
                subprocess.run(
                    [sys.executable, str(script), "--smoke", str(scratch / script.stem)],
                    cwd=ROOT,
                    env=env,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    timeout=timeout,
                ).returncode
                == 0
            )
        except subprocess.TimeoutExpired:
            fh.write(f"\nsmoke run stopped after the {timeout:.0f} s limit\n")
            passed = False
    return passed, time.monotonic() - start, children_cpu_seconds() - cpu, log


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="benchmarks to run (default: all), e.g. review_latency")
    ap.add_argument("--list", action="store_true", help="print the benchmark scripts and exit")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder even when all pass")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds each script may take")
    args = ap.parse_args()
    scripts = benchmark_scripts()
    if args.list:
        print("\n".join(p.name for p in scripts))
        return
    if args.names:
        unknown = sorted(set(args.names) - {p.stem for p in scripts})
        if unknown:
            sys.exit(f"error: no benchmark named {', '.join(unknown)}")
        scripts = [p for p in scripts if p.stem in args.names]
    scratch = Path(tempfile.mkdtemp(prefix="mumic-bench-smoke-"))
    print(f"smoke runs of {len(scripts)} benchmarks; scratch folder {scratch}", flush=True)
    timings: list[tuple[str, bool, float, float]] = []
    for script in scripts:
        passed, seconds, cpu, log = run_one(script, scratch, args.timeout)
        timings.append((script.name, passed, seconds, cpu))
        print(f"{'ok  ' if passed else 'FAIL'} {seconds:6.1f} s (CPU {cpu:6.1f} s)  {script.name}", flush=True)
        if not passed:
            print("".join(f"    {line}" for line in log.read_text(errors="replace").splitlines(True)[-60:]), flush=True)
    failed = [name for name, passed, *_ in timings if not passed]
    print(
        f"\nload average now {os.getloadavg()[0]:.1f}\n| benchmark | smoke run | seconds | CPU seconds |\n"
        "|---|---|---:|---:|"
    )
    for name, passed, seconds, cpu in timings:
        print(f"| {name} | {'ok' if passed else '**failed**'} | {seconds:.1f} | {cpu:.1f} |")
    print(
        f"| all | {len(timings) - len(failed)} of {len(timings)} ok | {sum(t[2] for t in timings):.1f} | "
        f"{sum(t[3] for t in timings):.1f} |"
    )
    if failed:
        sys.exit(f"error: smoke run failed: {', '.join(failed)} (logs in {scratch})")
    if args.keep:
        print(f"kept {scratch}")
    else:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
