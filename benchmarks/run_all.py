"""Runs every benchmark in this folder, one after the other.

Usage: python benchmarks/run_all.py [--backends tensorflow jax torch]

Extra arguments are passed to every benchmark script.
"""

import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).parent


def main(argv):
    scripts = sorted(
        path
        for path in HERE.glob("*.py")
        if not path.name.startswith(("_", "run_all"))
    )
    failed = []
    for script in scripts:
        print(f"\n===== {script.name}", flush=True)
        if subprocess.call([sys.executable, str(script), *argv]) != 0:
            failed.append(script.name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
