"""Latency of `selflearn serve` under load, from a separate load-generator process on loopback.

Starts the real server (uvicorn, one worker) on a free port, then sends an open-loop stream of
POST /v1/rewrite requests at a fixed rate (default 100/s for 60 s; requests are not held back by
slow answers) drawn from simulated traffic: real logged utterances, users, devices and hours.
Reports p50/p95/p99 and errors, next to the floor: the ONNX encoder alone on one utterance and
the rewriter's decision in process.

Usage: python benchmarks/service_latency.py --model online-model --world world [--rate 100 --seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mix(world_dir: Path, users: int, seed: int) -> list[dict]:
    """Request bodies from a fresh simulated day (the days after training)."""
    from selflearn.world.build import World
    from selflearn.world.run import simulate_to
    from selflearn.world.simulate import SimConfig

    with tempfile.TemporaryDirectory() as tmp:
        simulate_to(Path(tmp), world_dir, World.load(world_dir), SimConfig(users=users, days=1, seed=seed, first_day=28))
        turns = [json.loads(x) for x in (Path(tmp) / "logs.jsonl").read_text().splitlines()]
    return [{"utterance": t["utterance"]["text"], "user_id": t["user_id"],
             "device": {"type": t["device"]["type"], "has_screen": t["device"]["has_screen"], "location": t["device"].get("location")},
             "context": {"hour": int(t["timestamp"][11:13]), "timestamp": t["timestamp"]}}
            for t in turns if t["utterance"]["text"].strip()]  # ASR that heard nothing is not sent (the service answers 422)


def _pct(xs: list[float]) -> dict:
    a = np.array(xs) * 1000
    return {"n": len(xs), "p50_ms": round(float(np.percentile(a, 50)), 2), "p95_ms": round(float(np.percentile(a, 95)), 2),
            "p99_ms": round(float(np.percentile(a, 99)), 2), "max_ms": round(float(a.max()), 2)}


async def _load(url: str, bodies: list[dict], rate: float, seconds: float) -> tuple[list[float], int, dict]:
    lat: list[float] = []
    errors: dict[str, int] = {}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=5.0, limits=limits) as client:
        async def one(body: dict) -> None:
            t = time.perf_counter()
            try:
                r = await client.post(url, json=body)
                if r.status_code != 200:
                    errors[str(r.status_code)] = errors.get(str(r.status_code), 0) + 1
                    return
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                return
            lat.append(time.perf_counter() - t)

        for body in bodies[:20]:  # warm-up, not counted
            await client.post(url, json=body)
        n = int(rate * seconds)
        start = time.perf_counter()
        tasks = []
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(bodies[i % len(bodies)])))
        await asyncio.gather(*tasks)
        achieved = n / (time.perf_counter() - start)
    return lat, sum(errors.values()), {"by_kind": errors, "achieved_rate": round(achieved, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--world", type=Path, default=Path("world"))
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    bodies = _mix(args.world, args.users, args.seed)
    random.Random(args.seed).shuffle(bodies)

    # the floor, in this process: the encoder alone, and the whole decision without HTTP
    from selflearn.online import OnlineRewriter

    rw = OnlineRewriter.load(args.model)
    texts = [b["utterance"] for b in bodies[:500]]
    enc = []
    for t in texts:
        s = time.perf_counter()
        rw.encoder.encode([t])
        enc.append(time.perf_counter() - s)
    dec = []
    for b in bodies[:500]:
        rw._cache.clear()  # measure with the encoder, as for a new utterance
        s = time.perf_counter()
        rw.decide(b["utterance"], user_id=b["user_id"], device=b["device"], context=b["context"])
        dec.append(time.perf_counter() - s)
    del rw

    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen([sys.executable, "-m", "selflearn.cli.main", "serve", "--model", str(args.model), "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise SystemExit("server did not start: " + server.stderr.read().decode(errors="replace"))
        lat, n_err, extra = asyncio.run(_load(base + "/v1/rewrite", bodies, args.rate, args.seconds))
        metrics = httpx.get(base + "/metrics").text
    finally:
        server.terminate()
        server.wait(timeout=30)
    sources = {line.split('"')[1]: float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("selflearn_rewrite_requests_total{")}
    print(json.dumps({"rate_per_s": args.rate, "seconds": args.seconds, "distinct_requests": len(bodies),
                      "http": {**_pct(lat), "errors": n_err, **extra}, "answered_by": sources,
                      "encoder_alone_one_utterance": _pct(enc), "decision_in_process_uncached": _pct(dec),
                      "cpu": os.cpu_count()}, indent=2))


if __name__ == "__main__":
    main()
