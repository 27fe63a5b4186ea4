"""Decrypt file to file with `sigma decrypt` and with Python `cryptography`, side by side.

Both run in the same session on the same token files; each run is its own process, timed
from start to exit. Peak RSS is the process's own VmHWM, sampled from /proc while it runs:
wait4's ru_maxrss would also count the forking Python parent's memory. Python's
`Fernet.decrypt` is what a Cloud Function would run: read the token, decrypt, write.

    make bench                          # 16 MiB, 256 MiB, 1 GiB
    .venv/bin/python bench/decrypt_bench.py --sizes 16 256   # MiB, quicker
"""

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIGMA = Path(os.environ.get("SIGMA_BIN_DIR", ROOT / "target" / "release")) / "sigma"
PYTHON_DECRYPT = (
    "import sys\n"
    "from cryptography.fernet import Fernet\n"
    "token = open(sys.argv[2], 'rb').read()\n"
    "open(sys.argv[3], 'wb').write(Fernet(sys.argv[1]).decrypt(token))\n"
)


def peak_rss(pid, stop, result):
    """Follows VmHWM (peak resident set) of `pid` until `stop` is set."""
    path = f"/proc/{pid}/status"
    while not stop.is_set():
        try:
            with open(path) as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        result[0] = max(result[0], int(line.split()[1]) * 1024)
        except (FileNotFoundError, ProcessLookupError, ValueError):
            pass
        stop.wait(0.01)


def run(argv):
    """Wall seconds and peak RSS (bytes) of one process."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    stop, result = threading.Event(), [0]
    sampler = threading.Thread(target=peak_rss, args=(process.pid, stop, result))
    sampler.start()
    status = process.wait()
    elapsed = time.perf_counter() - started
    stop.set()
    sampler.join()
    if status != 0:
        sys.exit(f"{argv[0]} failed with status {status}")
    return elapsed, result[0]


def digest(path):
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
    return sha.digest()


def best(argv, repeats):
    runs = [run(argv) for _ in range(repeats)]
    return min(r[0] for r in runs), max(r[1] for r in runs)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 256, 1024], help="plaintext sizes in MiB")
    parser.add_argument("--repeats", type=int, default=3, help="runs per tool and size (best time is kept)")
    args = parser.parse_args()
    if not SIGMA.exists():
        sys.exit(f"{SIGMA} not found: run `cargo build --release` (make bench does)")
    key = subprocess.run([SIGMA, "keygen"], check=True, capture_output=True, text=True).stdout.strip()
    rows = []
    with tempfile.TemporaryDirectory(prefix="sigma-bench-") as tmp:
        tmp = Path(tmp)
        for mib in args.sizes:
            size = mib << 20
            plain, token = tmp / "plain", tmp / "token"
            with open(plain, "wb") as f:
                for _ in range(mib):
                    f.write(os.urandom(1 << 20))
            subprocess.run([SIGMA, "encrypt", "--key", key, plain, token], check=True)
            plain.unlink()
            sigma_s, sigma_rss = best([str(SIGMA), "decrypt", "--key", key, str(token), str(tmp / "out-sigma")], args.repeats)
            # Python needs ~6x the file in memory and is slow: fewer runs at 1 GiB.
            python_repeats = 1 if mib >= 1024 else args.repeats
            python_s, python_rss = best([sys.executable, "-c", PYTHON_DECRYPT, key, str(token), str(tmp / "out-python")], python_repeats)
            same = digest(tmp / "out-sigma") == digest(tmp / "out-python")
            for name in ("out-sigma", "out-python", "token"):
                (tmp / name).unlink()
            rows.append((mib, size, sigma_s, sigma_rss, python_s, python_rss, same))
            print(f"{mib} MiB done", file=sys.stderr, flush=True)

    mb = 1e6
    print(f"\nDecrypt file to file, plaintext size; best of {args.repeats} runs (Python: 1 run at 1 GiB); {os.cpu_count()} cores.\n")
    print("| size | sigma decrypt | sigma peak RSS | Python cryptography | Python peak RSS | speed ratio |")
    print("|---|---|---|---|---|---|")
    for mib, size, sigma_s, sigma_rss, python_s, python_rss, same in rows:
        label = f"{mib} MiB" if mib < 1024 else f"{mib // 1024} GiB"
        print(
            f"| {label} | {sigma_s:.2f} s, {size / sigma_s / mb:.0f} MB/s | {sigma_rss / 2**20:.0f} MiB "
            f"| {python_s:.2f} s, {size / python_s / mb:.0f} MB/s | {python_rss / 2**20:.0f} MiB "
            f"| {python_s / sigma_s:.1f}x |"
        )
        if not same:
            sys.exit("outputs differ!")


if __name__ == "__main__":
    main()
