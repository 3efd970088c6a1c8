#!/usr/bin/env python3
"""The staging benchmark (issue 3, "Performance goal"): prints figures, never fails on a miss.

Run from the repository root (needs cargo, node_modules from `npm ci`, and Info-ZIP `zip`):

    python3 benches/staging.py                  # 1 GiB corpus, one round
    python3 benches/staging.py --size 1G,4G     # adds the 4 GiB corpus; compares peak RSS
    python3 benches/staging.py --runs 3         # best of three per method (noisy machines)

In one run, per corpus size, it
  1. builds the worker (`cargo build --release --example stage_bench`, see examples/stage_bench.rs)
     and generates a reproducible corpus (fixed seed) in a temporary folder: thousands of small
     source-like files (15%), large logs and JSON lines (50%), incompressible data (35%, some
     named .zip/.gz/.png/.jpg/.nupkg/.tgz, some .bin/.dat/.so left to the probe);
  2. starts Azurite ($AZURITE_BLOB_BIN, else node_modules/.bin/azurite-blob from `npm ci`; plain
     HTTP, the well-known account) afresh for every measured upload, on a free port with its own
     data folder;
  3. measures wall time, MB/s of input (10^6 bytes/s of the files' sizes), archive size and peak
     RSS (VmHWM of the worker; GNU `time -v` for `zip`) of
       ours      the task's staging: archive streamed into concurrently uploaded blocks;
       baseline  Info-ZIP `zip -r -q` (default level 6) into a file, then that file uploaded by
                 the same block uploader, so only the archiving differs (time = zip + upload);
       floor     the same streaming pipeline storing every file (no probe, no deflate);
       deflate   the deflate cost: the files our archive deflates, deflated alone at its level
                 (one core, input already in memory; only the compress calls are timed);
  4. prints the table and the goals: baseline/ours >= 2x, ours/(floor + deflate) <= 1.5x,
     ours' peak RSS < 64 MiB, and (with several sizes) peak RSS of the larger corpora no higher
     than the smallest's (1 MiB allowance for allocator jitter). Each says PASS or MISS.

The corpus is read from the page cache by every method (it is generated, then read once to warm
the cache). Azurite is always stopped, also on errors and Ctrl-C. Nothing is left in the temporary
folder unless --keep is given.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# As in the Rust harness (emulator/src/azurite.rs): $AZURITE_BLOB_BIN, else the workspace's pinned one.
AZURITE = Path(os.environ.get("AZURITE_BLOB_BIN") or REPO / "node_modules" / ".bin" / "azurite-blob")
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
MIB = 1024 * 1024


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        env.pop(k, None)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


# ---------------------------------------------------------------------------------------------
# Tools.


def apt_install(package: str) -> bool:
    """Installs an apt package (fresh CI machines lack `time`); False when that is not possible."""
    if not shutil.which("apt-get"):
        return False
    prefix = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
    if prefix is None:
        return False
    log(f"installing {package} with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    if subprocess.run(prefix + ["apt-get", "install", "-y", "-q", package], **quiet).returncode:
        subprocess.run(prefix + ["apt-get", "update", "-q"], **quiet)
        return subprocess.run(prefix + ["apt-get", "install", "-y", "-q", package], **quiet).returncode == 0
    return True


def gnu_time() -> str | None:
    """GNU time, installed if missing; None means: fall back to the child's rusage."""
    path = "/usr/bin/time"
    if os.access(path, os.X_OK) or (apt_install("time") and os.access(path, os.X_OK)):
        return path
    log("GNU time is not available: peak RSS of zip comes from wait4's rusage instead")
    return None


def build_worker(given: str | None) -> Path:
    if given:
        return Path(given)
    log("building the worker: cargo build --release --example stage_bench (takes minutes with LTO)")
    out = subprocess.run(
        ["cargo", "build", "--release", "--example", "stage_bench", "--message-format=json-render-diagnostics"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    ).stdout
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == "stage_bench" and msg.get("executable"):
            return Path(msg["executable"])
    raise SystemExit("cargo built no stage_bench executable")


# ---------------------------------------------------------------------------------------------
# Processes.


def run_measured(cmd: list[str], cwd: Path | None = None, time_bin: str | None = None) -> tuple[float, int, str]:
    """Runs `cmd`; returns (wall seconds, peak RSS in KiB, stdout). Fails on a non-zero exit."""
    report = None
    if time_bin:
        fd, report = tempfile.mkstemp(prefix="aib-time-")
        os.close(fd)
        cmd = [time_bin, "-v", "-o", report] + cmd
    started = time.perf_counter()
    proc = tracked(subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env()))
    out, err = proc.communicate()
    CHILDREN.remove(proc)
    wall = time.perf_counter() - started
    # Popen has reaped the child already; its rusage is not available here, so the fallback
    # without GNU time uses RUSAGE_CHILDREN's maximum (the largest child so far: an upper bound).
    peak = 0
    if report:
        with open(report) as f:
            for line in f:
                if "Maximum resident set size" in line:
                    peak = int(line.rsplit(":", 1)[1])
        os.unlink(report)
    else:
        import resource

        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{err.decode(errors='replace')[-4000:]}")
    return wall, peak, out.decode()


def worker(binary: Path, *args: str) -> dict:
    proc = tracked(subprocess.Popen([str(binary), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env()))
    out, err = proc.communicate()
    CHILDREN.remove(proc)
    if proc.returncode:
        raise RuntimeError(f"stage_bench {args[0]} failed ({proc.returncode}):\n{err.decode(errors='replace')[-4000:]}")
    return json.loads(out.decode().strip().splitlines()[-1])


CHILDREN: list[subprocess.Popen] = []


def tracked(proc: subprocess.Popen) -> subprocess.Popen:
    """Remembered until it has finished, so that an interrupted run ends it (by its pid)."""
    CHILDREN.append(proc)
    return proc


class Azurite:
    """azurite-blob on a free loopback port with its own data folder, in its own process group."""

    def __init__(self, work: Path):
        require_azurite()
        self.location = Path(tempfile.mkdtemp(prefix="azurite-", dir=work))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log = open(self.location / "azurite.log", "wb")
        self.proc = subprocess.Popen(
            [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(self.port), "--location", str(self.location / "data"),
             # No --skipApiVersionCheck: Azurite refuses a service version it does not know, as
             # Azure refuses one not deployed where the account lives (README: "Storage service version").
             "--loose", "--disableTelemetry", "--silent"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"Azurite did not start: {(self.location / 'azurite.log').read_text(errors='replace')[-2000:]}")
                time.sleep(0.1)
        self.endpoint = f"http://127.0.0.1:{self.port}/{ACCOUNT}/"

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # the group this script created
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.location, ignore_errors=True)


RUNNING: list[Azurite] = []


def require_azurite() -> None:
    # Not installed from here: `npm ci` empties node_modules first, which breaks anything else
    # using it at the time.
    if not AZURITE.exists():
        raise SystemExit(f"Azurite is not installed: {AZURITE} is missing; run `npm ci` at the repository root (or set AZURITE_BLOB_BIN)")


def with_azurite(work: Path, fn):
    azurite = Azurite(work)
    RUNNING.append(azurite)
    try:
        return fn(azurite)
    finally:
        azurite.stop()
        RUNNING.remove(azurite)


def target_args(azurite: Azurite, blob: str) -> list[str]:
    return ["--endpoint", azurite.endpoint, "--account", ACCOUNT, "--key", ACCOUNT_KEY, "--blob", blob]


# ---------------------------------------------------------------------------------------------
# Measurements.


def measure_stream(binary: Path, work: Path, root: Path, store_only: bool, tag: str) -> dict:
    args = ["stage", "--root", str(root), *(["--store-only"] if store_only else [])]
    return with_azurite(work, lambda a: worker(binary, *args, *target_args(a, f"bench/{tag}.zip")))


def measure_baseline(binary: Path, work: Path, root: Path, time_bin: str | None, tag: str) -> dict:
    archive = work / f"{tag}.zip"
    try:
        zip_wall, zip_rss, _ = run_measured(["zip", "-r", "-q", str(archive), "."], cwd=root, time_bin=time_bin)
        up = with_azurite(work, lambda a: worker(binary, "upload", "--file", str(archive), *target_args(a, f"bench/{tag}.zip")))
    finally:
        archive.unlink(missing_ok=True)
    return {
        "seconds": zip_wall + up["seconds"],
        "zip_seconds": zip_wall,
        "upload_seconds": up["seconds"],
        "archive_bytes": up["archive_bytes"],
        "peak_rss_kib": max(zip_rss, up["peak_rss_kib"]),
        "zip_rss_kib": zip_rss,
        "upload_rss_kib": up["peak_rss_kib"],
    }


def best(runs: list[dict]) -> dict:
    """The fastest run, with the highest peak RSS seen in any run (RSS is not best-of)."""
    fastest = dict(min(runs, key=lambda r: r["seconds"]))
    fastest["peak_rss_kib"] = max(r["peak_rss_kib"] for r in runs)
    fastest["all_seconds"] = [r["seconds"] for r in runs]
    return fastest


def bench_size(binary: Path, work: Path, size: str, seed: int, runs: int, time_bin: str | None, corpus_dir: Path | None) -> dict:
    root = (corpus_dir or work / f"corpus-{size}") / "webapp"
    described = root.parent / "corpus.json"
    if root.exists():
        log(f"[{size}] reusing the corpus in {root}")
        info = json.loads(described.read_text()) if described.exists() else None
    else:
        log(f"[{size}] generating the corpus (seed {seed}) in {root}")
        info = worker(binary, "corpus", "--dir", str(root), "--size", size, "--seed", str(seed))
        described.write_text(json.dumps(info))
    log(f"[{size}] warming the page cache (store-only archive to nowhere)")
    worker(binary, "archive", "--root", str(root), "--store-only")
    cpu_only = worker(binary, "archive", "--root", str(root))

    results: dict[str, list[dict]] = {"ours": [], "baseline": [], "floor": [], "deflate": []}
    loads = [loadavg()]
    for i in range(runs):
        log(f"[{size}] round {i + 1}/{runs}: ours (load {loadavg()})")
        results["ours"].append(measure_stream(binary, work, root, False, f"ours-{i}"))
        log(f"[{size}] round {i + 1}/{runs}: baseline zip -r + upload (load {loadavg()})")
        results["baseline"].append(measure_baseline(binary, work, root, time_bin, f"baseline-{i}"))
        log(f"[{size}] round {i + 1}/{runs}: floor, store-only (load {loadavg()})")
        results["floor"].append(measure_stream(binary, work, root, True, f"floor-{i}"))
        log(f"[{size}] round {i + 1}/{runs}: deflate cost (load {loadavg()})")
        results["deflate"].append(worker(binary, "deflate", "--root", str(root)))
        loads.append(loadavg())
    return {
        "size": size,
        "corpus": info,
        "root": str(root),
        "cpu_only": cpu_only,
        "loads": loads,
        **{k: best(v) for k, v in results.items()},
    }


# ---------------------------------------------------------------------------------------------
# Report.


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def print_report(r: dict) -> list[tuple[str, bool]]:
    ours, base, floor, defl = r["ours"], r["baseline"], r["floor"], r["deflate"]
    input_bytes = ours["input_bytes"]
    mbps = lambda s: input_bytes / 1e6 / s
    files = ours["files"]
    print()
    print(f"== Staging benchmark, {r['size']} corpus: {input_bytes / MIB:,.0f} MiB in {files:,} files "
          f"({ours['deflated_files']:,} deflated, {ours['stored_files']:,} stored), {os.cpu_count()} cores ==")
    if r["corpus"]:
        c = r["corpus"]
        print(f"   corpus: {c['small_text_bytes'] / MIB:,.0f} MiB small source-like files, {c['large_text_bytes'] / MIB:,.0f} MiB logs/JSON, "
              f"{c['incompressible_bytes'] / MIB:,.0f} MiB incompressible (generated in {c['seconds']:.1f} s)")
    print(f"   load average (1/5/15 min) before and after each round: {' | '.join(r['loads'])}")
    rounds = len(ours["all_seconds"])
    if rounds > 1:
        print(f"   best of {rounds} rounds per method (peak RSS: highest of the rounds)")
    print()
    print(f"   {'method':<38} {'wall s':>8} {'MB/s':>8} {'archive MiB':>12} {'peak RSS MiB':>13}")
    rows = [
        ("ours: stream, probe + deflate level 2", ours),
        ("baseline: zip -r (level 6) + upload", base),
        ("floor: stream, store only", floor),
    ]
    for name, m in rows:
        print(f"   {name:<38} {m['seconds']:>8.2f} {mbps(m['seconds']):>8.1f} {m['archive_bytes'] / MIB:>12.1f} {m['peak_rss_kib'] / 1024:>13.1f}")
    print(f"   {'deflate cost (deflate alone, 1 core)':<38} {defl['seconds']:>8.2f} {defl['input_bytes'] / 1e6 / defl['seconds']:>8.1f} "
          f"{defl['output_bytes'] / MIB:>12.1f} {'':>13}")
    print()
    print(f"   baseline detail: zip {base['zip_seconds']:.2f} s (peak RSS {base['zip_rss_kib'] / 1024:.1f} MiB), "
          f"upload {base['upload_seconds']:.2f} s (peak RSS {base['upload_rss_kib'] / 1024:.1f} MiB)")
    print(f"   deflate cost detail: {defl['deflated_files']:,} files, {defl['input_bytes'] / MIB:,.0f} MiB in, "
          f"{defl['output_bytes'] / MIB:,.0f} MiB out; MB/s column is of the deflated input")
    cpu = r["cpu_only"]
    print(f"   archiving alone, to nowhere (no upload): {cpu['seconds']:.2f} s, {input_bytes / 1e6 / cpu['seconds']:.1f} MB/s, "
          f"{cpu['archive_bytes'] / MIB:,.1f} MiB")
    print()
    speedup = base["seconds"] / ours["seconds"]
    budget = floor["seconds"] + defl["seconds"]
    overhead = ours["seconds"] / budget
    rss = ours["peak_rss_kib"] / 1024
    goals = [
        (f"baseline / ours = {base['seconds']:.2f} / {ours['seconds']:.2f} = {speedup:.2f}x (goal >= 2x)", speedup >= 2),
        (f"ours / (floor + deflate cost) = {ours['seconds']:.2f} / ({floor['seconds']:.2f} + {defl['seconds']:.2f}) = {overhead:.2f}x (goal <= 1.5x)", overhead <= 1.5),
        (f"peak RSS of ours = {rss:.1f} MiB (goal < 64 MiB)", rss < 64),
    ]
    for text, ok in goals:
        print(f"   {verdict(ok)}  {text}")
    return goals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="1G", help="corpus size(s), comma separated: 1G, 4G, 1G,4G (default 1G)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--runs", type=int, default=1, help="rounds per size; the best time of each method is shown")
    parser.add_argument("--worker", help="a built stage_bench binary (default: cargo build it)")
    parser.add_argument("--workdir", help="where the temporary folder goes (default: $TMPDIR)")
    parser.add_argument("--corpus", help="keep/reuse corpora in this folder instead of the temporary one")
    parser.add_argument("--keep", action="store_true", help="leave the temporary folder")
    parser.add_argument("--json", help="also write all figures to this file")
    args = parser.parse_args()

    # Termination by a signal runs the cleanup below, as Ctrl-C does.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda n, _f: sys.exit(128 + n))

    require_azurite()
    binary = build_worker(args.worker)
    time_bin = gnu_time()
    if not shutil.which("zip") and not apt_install("zip"):
        raise SystemExit("Info-ZIP zip is needed for the baseline (apt-get install zip)")
    work = Path(tempfile.mkdtemp(prefix="aib-stage-bench-", dir=args.workdir))
    corpus_dir = Path(args.corpus) if args.corpus else None
    reports = []
    try:
        for size in args.size.split(","):
            reports.append(bench_size(binary, work, size.strip(), args.seed, args.runs, time_bin,
                                      corpus_dir / f"corpus-{size.strip()}-seed{args.seed}" if corpus_dir else None))
    finally:
        for proc in list(CHILDREN):
            proc.kill()
            proc.wait()
        for azurite in list(RUNNING):
            azurite.stop()
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    all_goals = []
    for r in reports:
        all_goals += print_report(r)
    if len(reports) > 1:
        first = reports[0]
        print()
        for r in reports[1:]:
            a, b = first["ours"]["peak_rss_kib"] / 1024, r["ours"]["peak_rss_kib"] / 1024
            ok = b <= a + 1
            print(f"   {verdict(ok)}  peak RSS {r['size']} = {b:.1f} MiB vs {first['size']} = {a:.1f} MiB (goal: no higher, 1 MiB allowance)")
    print()
    print(f"   load average now: {loadavg()}")
    if args.json:
        Path(args.json).write_text(json.dumps(reports, indent=2))
    return 0  # a benchmark: misses are reported, not failed


if __name__ == "__main__":
    sys.exit(main())
