"""How long does the `spos` command take to answer the questions that need no network?

Times, as fresh processes (the way a user meets them), ``spos --help``,
``spos space show`` and ``spos arch info`` (FLOPs of an arch), each
``--repeats`` times, interleaved so that a burst of load elsewhere on a
shared machine hits every command alike; prints the median and fastest
run per command against its target as a Markdown table, and whether torch
was imported. A bare ``python -c pass`` is timed too: the floor no command
can go below.

    python benchmarks/cli_startup.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPACE = "configs/spaces/shufflenetv2.yaml"
ARCH = "2,1,0,1,2,0,2,0,2,0,2,3,0,0,0,0,3,2,3,3"
# (label, spos arguments, target in seconds)
COMMANDS = [
    ("spos --help", ["--help"], 0.5),
    (f"spos space show {SPACE}", ["space", "show", SPACE], 1.5),
    ("spos arch info --space ... --arch ...", ["arch", "info", "--space", SPACE, "--arch", ARCH], 1.5),
]
# Runs the command in-process after the interpreter starts, then reports whether torch got imported.
PROBE = (
    "import sys, io, contextlib\n"
    "from pipeline.cli import main\n"
    "with contextlib.redirect_stdout(io.StringIO()):\n"
    "    try:\n"
    "        main(sys.argv[1:])\n"
    "    except SystemExit:\n"
    "        pass\n"
    "print('torch' in sys.modules)\n"
)


def spos_executable() -> list[str]:
    """The installed ``spos`` script beside this interpreter (what a user runs), else ``python -m pipeline.cli``."""
    script = Path(sys.executable).with_name("spos")
    if script.is_file():
        return [str(script)]
    found = shutil.which("spos")
    return [found] if found else [sys.executable, "-m", "pipeline.cli"]


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return elapsed


def imports_torch(args: list[str]) -> bool:
    out = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=ROOT, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1] == "True"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="runs per command (default 15)")
    args = parser.parse_args()
    if args.repeats < 1:
        raise SystemExit(f"--repeats must be at least 1, got {args.repeats}")
    spos = spos_executable()
    rows = [("python -c pass (floor)", [sys.executable, "-c", "pass"], None, None)]
    rows += [(label, [*spos, *cmd], target, cmd) for label, cmd, target in COMMANDS]
    for _, argv, _, _ in rows:  # warm the file cache: the first run of a session pays for disk reads
        timed(argv)
    times: dict[str, list[float]] = {label: [] for label, *_ in rows}
    for _ in range(args.repeats):
        for label, argv, _, _ in rows:
            times[label].append(timed(argv))

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"`spos` start-up, {args.repeats} runs each, {os.cpu_count()} CPUs, load average {load:.1f} at the end\n")
    print("| command | median s | fastest s | target s | meets target (median) | imports torch |")
    print("|---|---:|---:|---:|:---:|:---:|")
    for label, _, target, cmd in rows:
        median, fastest = statistics.median(times[label]), min(times[label])
        verdict = "-" if target is None else ("yes" if median <= target else "no")
        torch = "-" if cmd is None else ("yes" if imports_torch(cmd) else "no")
        shown = "-" if target is None else f"{target:.1f}"
        print(f"| `{label}` | {median:.3f} | {fastest:.3f} | {shown} | {verdict} | {torch} |")


if __name__ == "__main__":
    main()
