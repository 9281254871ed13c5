"""Runs the workspace's test binaries, the end-to-end ones side by side.

`cargo test` runs one test binary after another. The end-to-end binaries
spend most of their time waiting on the stack (a sweep's next minute, a
consumer's retry, a holding period), so they overlap well: this runs the
unit and in-process binaries first, one at a time as cargo would, then the
end-to-end binaries PARALLEL at a time, the slowest first. Each binary's
output goes to its own log in LOG_DIR and, whole, to LOG (for the summary);
the line per binary says how it went and how long it took.

  run_tests.py --log FILE --log-dir DIR [--parallel N] [-- test-binary args]

The binaries must be built (`cargo test --no-run`); this builds nothing.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

# The slowest end-to-end binaries (measured, scripts/test's log), started
# first so that the others fill in around them.
SLOWEST_FIRST = [
    "e2e_withdrawals",
    "e2e_rebates",
    "e2e_notifications",
    "e2e_orders",
    "e2e_backbone",
    "e2e_payments",
    "e2e_alipay",
    "e2e_wechatpay",
]


def test_binaries():
    """(name, executable, package dir) of every test binary cargo built."""
    out = subprocess.run(
        ["cargo", "test", "--locked", "--workspace", "--no-run", "--message-format=json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    binaries = []
    for line in out.splitlines():
        message = json.loads(line)
        if message.get("reason") != "compiler-artifact" or not message.get("executable"):
            continue
        if not message["profile"]["test"]:
            continue
        package_dir = os.path.dirname(message["manifest_path"])
        binaries.append((message["target"]["name"], message["executable"], package_dir))
    return binaries


def run(binary, args, log_dir):
    name, executable, package_dir = binary
    started = time.monotonic()
    log_path = os.path.join(log_dir, f"{name}.log")
    with open(log_path, "w") as log:
        # As cargo runs them: from the package's directory.
        code = subprocess.run(
            [executable, *args], cwd=package_dir, stdout=log, stderr=subprocess.STDOUT
        ).returncode
    seconds = time.monotonic() - started
    with open(log_path) as log:
        output = log.read()
    result = next(
        (l for l in output.splitlines() if l.startswith("test result:")), "no test result line"
    )
    print(f"{'ok    ' if code == 0 else 'FAILED'} {name:<28} {seconds:6.1f} s  {result}", flush=True)
    return name, code, output


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--log", required=True)
    parser.add_argument("--log-dir", required=True)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("args", nargs="*")
    options = parser.parse_args()
    os.makedirs(options.log_dir, exist_ok=True)

    binaries = test_binaries()
    in_process = [b for b in binaries if not b[0].startswith("e2e_")]
    end_to_end = sorted(
        (b for b in binaries if b[0].startswith("e2e_")),
        key=lambda b: SLOWEST_FIRST.index(b[0]) if b[0] in SLOWEST_FIRST else len(SLOWEST_FIRST),
    )
    results = [run(b, options.args, options.log_dir) for b in in_process]
    with ThreadPoolExecutor(max_workers=options.parallel) as pool:
        results += list(pool.map(lambda b: run(b, options.args, options.log_dir), end_to_end))

    with open(options.log, "a") as log:
        for name, _, output in results:
            log.write(f"     Running {name}\n{output}\n")
    failed = [name for name, code, _ in results if code != 0]
    if failed:
        for name, _, output in results:
            if name in failed:
                sys.stdout.write(f"\n----- {name}\n{output}")
        print(f"\nfailed: {' '.join(failed)}", flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
