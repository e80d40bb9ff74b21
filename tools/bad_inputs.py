"""Run the whole bad-input catalogue and count the tracebacks a user would have seen.

Runs ``tests/test_bad_inputs.py`` (every case in this process, and the subprocess subset as
real ``hqrun`` processes) with ``HQRUN_CATALOGUE_OUT`` set, so each case leaves what it printed
(stderr, warnings, stdout) in ``<out>/<case>.<how>.txt``; then counts the cases and the lines
containing "Traceback" in those files, which is the issue's acceptance check:

    python tools/bad_inputs.py                 # writes to a temporary directory
    python tools/bad_inputs.py --out runs/bad_inputs --fast   # in-process cases only

Exit status: pytest's when it failed, else 1 if any traceback was found, else 0.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="directory for the outputs (default: a temporary one)")
    ap.add_argument("--fast", action="store_true", help="skip the subprocess subset (slow)")
    args = ap.parse_args(argv)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="hqrun_bad_inputs_"))
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HQRUN_CATALOGUE_OUT": str(out), "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    cmd = [sys.executable, "-m", "pytest", "tests/test_bad_inputs.py", "-q", "-p", "no:randomly"]
    if args.fast:
        cmd += ["-m", "not slow"]
    status = subprocess.run(cmd, cwd=ROOT, env=env).returncode
    files = sorted(out.glob("*.txt"))
    cases = {f.name.split(".")[0] for f in files}
    tracebacks = {f.name: f.read_text(encoding="utf-8", errors="replace").count("Traceback")
                  for f in files}
    total = sum(tracebacks.values())
    print(f"\ncatalogue: {len(cases)} cases, {len(files)} outputs in {out}")
    print(f"grep -c Traceback over the outputs: {total}")
    for name, count in tracebacks.items():
        if count:
            print(f"  {name}: {count}")
    if status:
        return status
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
