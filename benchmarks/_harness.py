"""What every benchmark shares: one subprocess per backend, medians, memory.

A benchmark script defines `measure(args)`, which runs in a process whose
Keras backend is already chosen and returns a list of result rows (dicts),
and calls `main(measure, description)`. Without `--backend` the script runs
itself once per backend, prints every row and saves them, with how and when
they were measured, to `benchmarks/results/<script>.json`, from which
`scripts/benchmarks_table.py` writes docs/benchmarks.md; with
`--backend NAME` it runs `measure` for that backend only.
"""

import argparse
import datetime
import json
import os
import pathlib
import statistics
import subprocess
import sys
import threading
import time

BACKENDS = ("tensorflow", "jax", "torch")
RESULT_PREFIX = "RESULT "
RESULTS = pathlib.Path(__file__).parent / "results"


def median_seconds(function, repeats):
    """Median wall time of `repeats` calls of `function`."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _resident_bytes():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_memory_growth(function):
    """Runs `function`; returns its result and the peak growth of the RSS.

    The resident set size is sampled every millisecond while `function`
    runs, so this counts every allocator (numpy, TensorFlow, XLA, torch).
    """
    baseline = _resident_bytes()
    peak = baseline
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _resident_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        result = function()
    finally:
        done.set()
        sampler.join()
    return result, max(peak, _resident_bytes()) - baseline


def _run_backend(script, backend, extra_args):
    env = {**os.environ, "KERAS_BACKEND": backend}
    command = [sys.executable, script, "--backend", backend, *extra_args]
    completed = subprocess.run(
        command, env=env, capture_output=True, text=True, check=False
    )
    rows = [
        json.loads(line[len(RESULT_PREFIX) :])
        for line in completed.stdout.splitlines()
        if line.startswith(RESULT_PREFIX)
    ]
    if completed.returncode != 0:
        print(completed.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"{backend} run failed ({completed.returncode})")
    return rows


def print_table(rows):
    columns = list(dict.fromkeys(key for row in rows for key in row))
    cells = [
        [_format(row.get(column, "")) for column in columns] for row in rows
    ]
    widths = [
        max(len(column), *(len(line[i]) for line in cells))
        for i, column in enumerate(columns)
    ]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for line in cells:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)))


def _format(value):
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def main(measure, description, add_arguments=None):
    """Runs `measure` on every chosen backend and prints one table."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--backends",
        nargs="+",
        choices=BACKENDS,
        default=list(BACKENDS),
        help="backends to run, each in its own process (default: all)",
    )
    parser.add_argument(
        "--no-save",
        action="store_true",
        help="print the rows only, leaving benchmarks/results/ as it is",
    )
    parser.add_argument("--backend", choices=BACKENDS, help=argparse.SUPPRESS)
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args()
    if args.backend:  # We are the child process of one backend.
        for row in measure(args):
            print(RESULT_PREFIX + json.dumps(row), flush=True)
        return
    script = os.path.abspath(sys.argv[0])
    forwarded = _without_backends(sys.argv[1:])
    context = _context(script)
    rows = []
    for backend in args.backends:
        print(f"{os.path.basename(script)}: {backend} ...", flush=True)
        rows.extend(_run_backend(script, backend, forwarded))
    print_table(rows)
    if not args.no_save:
        load_at_end = round(os.getloadavg()[0], 2)
        _save(
            script,
            {**context, "load_average_at_end": load_at_end, "rows": rows},
        )


def _context(script):
    """How, where and on which code a run measures, taken as it starts."""

    def git(*command):
        return subprocess.run(
            ["git", *command],
            cwd=os.path.dirname(script),
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()

    return {
        "command": " ".join(
            ["python", f"benchmarks/{os.path.basename(script)}", *sys.argv[1:]]
        ),
        "measured": datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%d %H:%M UTC"
        ),
        "commit": git("rev-parse", "--short", "HEAD")
        # The code measured: the package and the benchmarks.
        + (
            "+changes"
            if git("status", "--porcelain", "--", "../frozen_bn", ".")
            else ""
        ),
        "cpus": os.cpu_count(),
        "load_average_at_start": round(os.getloadavg()[0], 2),
    }


def _save(script, result):
    """Writes the result file whole or not at all (next to it, then moved)."""
    RESULTS.mkdir(exist_ok=True)
    target = RESULTS / (pathlib.Path(script).stem + ".json")
    temporary = target.with_suffix(".json.tmp")
    with open(temporary, "w", encoding="utf-8") as file:
        json.dump(result, file, indent=1)
        file.write("\n")
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, target)
    print(f"saved {target.relative_to(RESULTS.parent.parent)}")


def _without_backends(argv):
    """The command line without its `--backends A B ...` option."""
    kept, skipping = [], False
    for arg in argv:
        if arg == "--backends":
            skipping = True
        elif not (skipping and arg in BACKENDS):
            skipping = False
            kept.append(arg)
    return kept
