"""`python -m bench [sync] [writeback] [contention] [fleet] [coldstart] [--payments N] [--duration S]
[--phases ...] [--providers ...] [--runs N]`: no scenario runs all.

All of them: `writeback`, which waits on Sage's published 100 calls a minute far more than it computes,
runs in a process of its own beside `sync`, `contention` and `fleet` (one after another; they are CPU),
and `coldstart`, whose ratios want a quiet machine, runs alone once they have all ended.
"""

import argparse
import subprocess
import sys
import tempfile
import time

from bench import coldstart, contention, fleet, sync, writeback
from bench.harness import PROVIDERS, use_fake_aws
from payedge_connect.models import Provider

SCENARIOS = {"sync": sync, "writeback": writeback, "contention": contention, "fleet": fleet, "coldstart": coldstart}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description="PayEdge Connect benchmarks")
    parser.add_argument("scenarios", nargs="*", help=f"scenarios to run: {', '.join(SCENARIOS)} (default: all)")
    parser.add_argument(
        "--payments",
        type=int,
        default=writeback.PAYMENTS,
        help=f"payments per provider in the writeback scenario (default {writeback.PAYMENTS:,})",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=contention.DURATION_S,
        help=f"seconds the contention scenario's Lambdas run per provider (default {contention.DURATION_S:.0f})",
    )
    parser.add_argument(
        "--providers",
        default=",".join(provider.value for provider in PROVIDERS),
        help="comma-separated providers to run (default: all three)",
    )
    parser.add_argument(
        "--phases",
        default=",".join(fleet.PHASES),
        help=f"fleet scenario phases (default: {','.join(fleet.PHASES)}); fleet.json is assembled from all three",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=coldstart.RUNS,
        help=f"fresh interpreters per handler and tracing mode in the coldstart scenario (default {coldstart.RUNS})",
    )
    args = parser.parse_args()
    providers = [Provider(name.strip()) for name in args.providers.split(",") if name.strip()]
    names = args.scenarios or list(SCENARIOS)
    unknown = [name for name in names if name not in SCENARIOS]
    if args.runs < 7:
        parser.error("--runs: a median of at least 7 runs")
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")

    if not args.scenarios:
        run_all(sys.argv[1:])
        return
    use_fake_aws()
    for name in names:
        run_scenario(name, args, providers)


def run_all(options: list[str]) -> None:
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as writeback_output:
        beside = subprocess.Popen(
            [sys.executable, "-m", "bench", "writeback", *options], stdout=writeback_output, stderr=subprocess.STDOUT
        )
        try:
            for name in ("sync", "contention", "fleet"):
                _run_child(name, options)
        finally:
            beside.wait()
        writeback_output.seek(0)
        print(writeback_output.read(), flush=True)
    _run_child("coldstart", options)
    print(f"\nmake bench: {time.perf_counter() - started:.0f} s in all", flush=True)
    if beside.returncode:
        raise SystemExit(f"scenario writeback ended with exit code {beside.returncode}")


def _run_child(name: str, options: list[str]) -> None:
    # A process per scenario, as when one is asked for: each starts from a clean moto and module state.
    subprocess.run([sys.executable, "-m", "bench", name, *options], check=True)


def run_scenario(name: str, args: argparse.Namespace, providers: list[Provider]) -> None:
    started = time.perf_counter()
    if name == "sync":
        sync.run(providers)
    elif name == "contention":
        contention.run(providers, duration_s=args.duration)
    elif name == "fleet":
        fleet.run(phases=[phase.strip() for phase in args.phases.split(",") if phase.strip()])
    elif name == "coldstart":
        coldstart.run(runs=args.runs)
    else:
        writeback.run(providers, payments=args.payments)
    print(f"\nscenario {name}: {time.perf_counter() - started:.0f} s\n", flush=True)


if __name__ == "__main__":
    main()
