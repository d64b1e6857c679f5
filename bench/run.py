"""Run the benchmarks and keep their results.

    .venv/bin/python bench/run.py                 # every bench/*.py but this one
    .venv/bin/python bench/run.py allocator dns   # just these (names without .py)
    .venv/bin/python bench/run.py allocator -- --quick   # arguments after -- go to each script

Each benchmark runs as its own process with this interpreter and PYTHONSAFEPATH=1, and must
print one JSON object as the last line of its stdout. That line lands in
bench/results/<name>.json. The exit status is non-zero if any benchmark failed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"


def available() -> list[str]:
    return sorted(p.stem for p in BENCH.glob("*.py") if p.name != Path(__file__).name)


def run_one(name: str, extra: list[str]) -> bool:
    script = BENCH / f"{name}.py"
    if not script.is_file():
        print(f"{name}: no such benchmark (have: {', '.join(available())})", file=sys.stderr)
        return False
    env = dict(os.environ, PYTHONSAFEPATH="1")
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(script), *extra], env=env, cwd=BENCH.parent,
                          stdout=subprocess.PIPE, text=True)
    elapsed = time.monotonic() - started
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 or not lines:
        print(f"{name}: failed (exit {done.returncode}, {elapsed:.1f}s)", file=sys.stderr)
        return False
    try:
        result = json.loads(lines[-1])
    except json.JSONDecodeError as error:
        print(f"{name}: last stdout line is not JSON ({error})", file=sys.stderr)
        return False
    RESULTS.mkdir(exist_ok=True)
    partial = RESULTS / f"{name}.json.tmp"
    partial.write_text(json.dumps(result, indent=2) + "\n")
    partial.replace(RESULTS / f"{name}.json")
    print(f"{name}: ok in {elapsed:.1f}s -> {(RESULTS / f'{name}.json').relative_to(BENCH.parent)}")
    return True


def main(argv: list[str]) -> int:
    names, extra = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv \
        else (argv, [])
    results = [run_one(name.removesuffix(".py"), extra) for name in names or available()]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
