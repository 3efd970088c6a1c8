#!/usr/bin/env python3
"""The build log benchmark (issue 16): prints figures, never fails on a miss.

Run from the repository root (needs cargo and node_modules from `npm ci`; GNU time):

    python3 benches/build_log.py                # 20 MB and 200 MB logs
    python3 benches/build_log.py --size 50M     # one size

For each size it starts the local Azure emulator with Azurite (`aib-emulator --start-azurite`),
told to pad every run's customization.log with that many bytes of script output
(`log_filler`), written as an append blob in eight steps over a 20-second Customizing phase;
then runs a full build with the release `aib-task` binary exactly as the agent would (INPUT_* and
ENDPOINT_* variables), the log streamed live (`streamBuildLog: true`), its output to a file. It
measures the task's wall time and peak RSS (GNU `time -v`), the log's size, the lines printed and
whether the attached copy equals the log in size, then prints the goals: peak RSS below 64 MiB,
and no higher for the largest log than for the smallest (4 MiB allowance). Each says PASS or MISS.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time


def size_arg(text: str) -> int:
    m = re.fullmatch(r"(\d+)([KMG]?)", text.strip().upper())
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text}")
    return int(m.group(1)) * {"": 1, "K": 10**3, "M": 10**6, "G": 10**9}[m.group(2)]


def build() -> None:
    for cmd in (
        ["cargo", "build", "--quiet", "--release", "--bin", "aib-task"],
        ["cargo", "build", "--quiet", "-p", "aib-emulator", "--bin", "aib-emulator"],
    ):
        subprocess.run(cmd, check=True)


def start_emulator(work: str, filler: int) -> tuple[subprocess.Popen, dict]:
    return start_emulator_with(work, {
        "log_filler": filler,
        "timing": {"customizing": 20000, "log_steps": 8},
    })


def start_emulator_with(work: str, config: dict) -> tuple[subprocess.Popen, dict]:
    """Starts the emulator (with Azurite) on `config`; its process and its startup facts."""
    path = os.path.join(work, "config.json")
    with open(path, "w") as f:
        json.dump(config, f)
    out = open(os.path.join(work, "emulator.out"), "w+")
    err = open(os.path.join(work, "emulator.err"), "w")
    proc = subprocess.Popen(
        ["./target/debug/aib-emulator", "--start-azurite", "--azurite-oauth",
         "--ca-out", os.path.join(work, "ca.pem"), "--config", path],
        stdout=out, stderr=err, start_new_session=True,
    )
    for _ in range(300):
        out.seek(0)
        lines = out.read().splitlines()
        if len(lines) >= 2:
            return proc, json.loads(lines[1])
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    stop(proc)
    sys.exit("the emulator did not start: " + open(os.path.join(work, "emulator.err")).read())


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def pipeline_env(info: dict, work: str) -> dict:
    cid, base = info["service_connection_id"], info["base_url"]
    sub, rg, location = info["subscription_id"], info["resource_group"], info["location"]
    return {
        "PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"),
        "TF_BUILD": "True", "SYSTEM_DEFAULTWORKINGDIRECTORY": os.getcwd(),
        "AGENT_TEMPDIRECTORY": work, "BUILD_BUILDID": "20261206", "SYSTEM_JOBATTEMPT": "1",
        "SSL_CERT_FILE": os.path.join(work, "ca.pem"), "AIB_POLL_INTERVAL": "1",
        f"ENDPOINT_URL_{cid}": base,
        f"ENDPOINT_AUTH_SCHEME_{cid}": "ServicePrincipal",
        f"ENDPOINT_AUTH_PARAMETER_{cid}_AUTHENTICATIONTYPE": "spnKey",
        f"ENDPOINT_AUTH_PARAMETER_{cid}_TENANTID": info["tenant_id"],
        f"ENDPOINT_AUTH_PARAMETER_{cid}_SERVICEPRINCIPALID": info["client_id"],
        f"ENDPOINT_AUTH_PARAMETER_{cid}_SERVICEPRINCIPALKEY": info["client_secret"],
        f"ENDPOINT_DATA_{cid}_SUBSCRIPTIONID": sub,
        f"ENDPOINT_DATA_{cid}_ENVIRONMENT": "AzureCloud",
        f"ENDPOINT_DATA_{cid}_ACTIVEDIRECTORYAUTHORITY": base,
        "INPUT_IBSUBSCRIPTION": cid, "INPUT_IBAZURERESOURCEGROUP": rg,
        "INPUT_IBLOCATION": location,
        "INPUT_MANAGEDIDENTITY": info["managed_identity"]["resource_id"],
        "INPUT_IMAGESOURCE": "marketplace",
        "INPUT_BASEIMAGE": "Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2",
        "INPUT_PROVISIONER": "shell", "INPUT_PACKAGEPATH": "demo/webapp",
        "INPUT_INLINESCRIPT": "sh /tmp/webapp/scripts/install.sh",
        "INPUT_STORAGEACCOUNTNAME": info["storage_accounts"][0]["name"],
        "INPUT_DISTRIBUTETYPE": "managedimage",
        "INPUT_IMAGEIDFORDISTRIBUTE":
            f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/images/bench",
        "INPUT_MANAGEDIMAGELOCATION": location,
        "INPUT_STREAMBUILDLOG": "true",
    }


def measure(filler: int) -> dict:
    work = tempfile.mkdtemp(prefix="aib-log-bench-")
    proc, info = start_emulator(work, filler)
    try:
        out_path = os.path.join(work, "pipeline.log")
        started = time.monotonic()
        with open(out_path, "w") as out:
            run = subprocess.run(
                ["/usr/bin/time", "-v", "./target/release/aib-task"],
                env=pipeline_env(info, work), stdout=out, stderr=subprocess.PIPE, text=True,
            )
        wall = time.monotonic() - started
        rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr).group(1))
        printed, attached = 0, None
        with open(out_path, errors="replace") as f:
            for line in f:
                if line.startswith("│ "):
                    printed += 1
                elif line.startswith("##vso[task.uploadfile]"):
                    attached = line.split("]", 1)[1].strip()
        log_bytes = os.path.getsize(attached) if attached and os.path.exists(attached) else 0
        return {"exit": run.returncode, "wall": wall, "rss_mib": rss_kb / 1024,
                "log_mb": log_bytes / 1e6, "printed": printed}
    finally:
        stop(proc)
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="20M,200M",
                        help="comma-separated filler sizes, e.g. 20M,200M")
    args = parser.parse_args()
    sizes = [size_arg(s) for s in args.size.split(",")]
    build()
    rows = []
    for size in sizes:
        r = measure(size)
        rows.append((size, r))
        print(f"{size / 1e6:>6.0f} MB filler: exit {r['exit']}, log {r['log_mb']:.1f} MB "
              f"attached, {r['printed']} lines printed, {r['wall']:.1f} s, "
              f"peak RSS {r['rss_mib']:.1f} MiB", flush=True)
    print()
    for size, r in rows:
        ok = r["exit"] == 0 and r["rss_mib"] < 64
        print(f"{'PASS' if ok else 'MISS'} {size / 1e6:.0f} MB log: peak RSS {r['rss_mib']:.1f} MiB "
              f"(< 64 MiB, build succeeded)")
    if len(rows) > 1:
        small, large = rows[0][1], rows[-1][1]
        ok = large["rss_mib"] <= small["rss_mib"] + 4
        print(f"{'PASS' if ok else 'MISS'} flat: {large['rss_mib']:.1f} MiB for the largest log vs "
              f"{small['rss_mib']:.1f} MiB for the smallest (4 MiB allowance)")


if __name__ == "__main__":
    main()
