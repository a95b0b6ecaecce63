"""Latency of `selflearn online serve` under load, from a separate load-generator process on loopback.

Starts the real server (uvicorn, one worker) on a free port, then sends an open-loop stream of
POST /v1/rewrite requests at a fixed rate (default 100/s for 60 s; requests are not held back by
slow answers) drawn from simulated traffic: real logged utterances, users, devices and hours.
Reports p50/p95/p99 and errors, next to the floor: the ONNX encoder alone on one utterance and
the rewriter's decision in process.

With ``--overload``, it then measures admission control: the capacity (requests/s answered by a
closed loop of 8 concurrent callers), then open-loop streams at 2x and 4x that capacity (256 keep-alive
connections, each request given up 2 s after it was due, as the assistant would), once with the
default deadline (50 ms: what cannot be answered in time is refused with 503 at once) and once with
admission control effectively off (a 60 s deadline and no queue cap, as before it existed): the share answered within 50 ms, the
share shed (503), the share answered late, and errors that are not deliberate 503s.

Usage: python benchmarks/service_latency.py --model online-model --world world [--rate 100 --seconds 60] [--overload]
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
    from selflearn.world.experiments import simulate_to
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


async def _load(url: str, bodies: list[dict], rate: float, seconds: float, headers: dict) -> tuple[list[float], int, dict]:
    lat: list[float] = []
    errors: dict[str, int] = {}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=5.0, limits=limits, headers=headers) as client:
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


async def _capacity(url: str, bodies: list[dict], headers: dict, seconds: float = 10.0, callers: int = 8) -> float:
    """Requests/s answered 200 by ``callers`` concurrent closed-loop callers."""
    done = 0
    stop = time.perf_counter() + seconds
    u = httpx.URL(url)
    encoded = [json.dumps(b).encode() for b in bodies]

    async def caller(k: int) -> None:
        nonlocal done
        conn = _Conn(u.host, u.port, headers)
        i = k
        while time.perf_counter() < stop:
            status = await conn.post(u.path, encoded[i % len(encoded)])  # (not `done += await ...`: that would read done before awaiting)
            done += status == 200
            i += callers
        conn.reset()

    start = time.perf_counter()
    await asyncio.gather(*(caller(k) for k in range(callers)))
    return done / (time.perf_counter() - start)


class _Conn:
    """One persistent HTTP/1.1 connection on raw asyncio streams (httpx's pool costs time quadratic
    in the number of waiting requests, so at several hundred requests/s it, not the server, is the limit)."""

    def __init__(self, host: str, port: int, headers: dict) -> None:
        self.host, self.port = host, port
        self.head = "".join(f"{k}: {v}\r\n" for k, v in {"host": f"{host}:{port}", "content-type": "application/json", **headers}.items())
        self.reader = self.writer = None

    async def post(self, path: str, body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            self.writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.writer.write(f"POST {path} HTTP/1.1\r\n{self.head}content-length: {len(body)}\r\n\r\n".encode() + body)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = next((int(x.split(b":")[1]) for x in head.split(b"\r\n") if x.lower().startswith(b"content-length:")), 0)
        await self.reader.readexactly(length)
        if b"connection: close" in head.lower():
            self.writer.close()
            self.reader = self.writer = None
        return status

    def reset(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _overload(url: str, bodies: list[dict], rate: float, seconds: float, headers: dict, within_s: float = 0.05,
                    connections: int = 256, give_up_s: float = 2.0) -> dict:
    """An open-loop stream at ``rate`` over ``connections`` keep-alive connections (the assistant's backend
    pool): how each request ended. Latency counts from the moment the request was due, so time spent
    waiting for a free connection counts too; a request not answered within ``give_up_s`` of that is
    abandoned, as the assistant would."""
    u = httpx.URL(url)
    outcome = {"within_50ms": 0, "late": 0, "shed_503": 0, "errors_5xx_other": 0, "abandoned_2s": 0, "transport_errors": 0}
    lat: list[float] = []
    n = int(rate * seconds)
    due: asyncio.Queue = asyncio.Queue()
    encoded = [json.dumps(b).encode() for b in bodies]

    async def worker() -> None:
        conn = _Conn(u.host, u.port, headers)
        while True:
            item = await due.get()
            if item is None:
                conn.reset()
                return
            t_due, body = item
            left = t_due + give_up_s - time.perf_counter()
            if left <= 0:
                outcome["abandoned_2s"] += 1
                continue
            try:
                status = await asyncio.wait_for(conn.post(u.path, body), timeout=left)
            except TimeoutError:
                outcome["abandoned_2s"] += 1
                conn.reset()
                continue
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                outcome["transport_errors"] += 1
                conn.reset()
                continue
            took = time.perf_counter() - t_due
            if status == 200:
                lat.append(took)
                outcome["within_50ms" if took <= within_s else "late"] += 1
            elif status == 503:
                outcome["shed_503"] += 1
            else:
                outcome["errors_5xx_other" if status >= 500 else "transport_errors"] += 1

    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    start = time.perf_counter()
    for i in range(n):
        t_due = start + i / rate
        delay = t_due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        due.put_nowait((t_due, encoded[i % len(encoded)]))
    achieved = n / (time.perf_counter() - start)
    for _ in workers:
        due.put_nowait(None)
    await asyncio.gather(*workers)
    shares = {f"share_{k}": round(v / n, 4) for k, v in outcome.items()}
    return {"offered_per_s": round(rate, 1), "sent_per_s": round(achieved, 1), "requests": n, **outcome, **shares,
            "answered_latency": _pct(lat) if lat else None}


def _start(model: Path, keys: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen([sys.executable, "-m", "selflearn.cli.main", "online", "serve", "--model", str(model), "--port", str(port),
                               "--api-keys", str(keys), *extra], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return server, base
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit("server did not start: " + server.stderr.read().decode(errors="replace"))


def _overload_arms(model: Path, keys: Path, headers: dict, bodies: list[dict], seconds: float) -> dict:
    """Capacity is measured once, with admission control off (what the server can do); then both arms
    get the same offered rates, 2x and 4x that."""
    out: dict = {}
    cap = None
    for arm, extra in (("no_admission_control", ("--deadline-ms", "60000", "--max-queue", "1000000")), ("admission_control_50ms", ())):
        server, base = _start(model, keys, *extra)
        try:
            url = base + "/v1/rewrite"
            # each phase gets requests the server has not seen yet where the mix allows (the encoder caches what it saw)
            asyncio.run(_load(url, bodies[-200:], 50, 2, headers))  # warm-up
            if cap is None:
                cap = asyncio.run(_capacity(url, bodies[::-1], headers))
                out["capacity_per_s"] = round(cap, 1)
            n2 = int(2 * cap * seconds)
            runs = {"2x": asyncio.run(_overload(url, bodies, 2 * cap, seconds, headers)),
                    "4x": asyncio.run(_overload(url, bodies[n2:] + bodies[:n2], 4 * cap, seconds, headers))}
            status = httpx.get(base + "/v1/status", headers=headers).json()
        finally:
            server.terminate()
            server.wait(timeout=30)
        out[arm] = {**runs, "server": {k: status[k] for k in ("shed", "expired", "job_ms")}}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--world", type=Path, default=Path("world"))
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--overload", action="store_true", help="Also measure admission control at 2x and 4x capacity.")
    ap.add_argument("--overload-seconds", type=float, default=15.0)
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

    from selflearn.service.keys import create_key

    keys = Path(tempfile.mkdtemp()) / "keys.txt"
    secret, _ = create_key(keys, "bench", "rewrite,admin")
    headers = {"authorization": f"Bearer {secret}"}
    server, base = _start(args.model, keys)
    try:
        lat, n_err, extra = asyncio.run(_load(base + "/v1/rewrite", bodies, args.rate, args.seconds, headers))
        metrics = httpx.get(base + "/metrics", headers=headers).text
    finally:
        server.terminate()
        server.wait(timeout=30)
    sources = {line.split('"')[1]: float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("selflearn_rewrite_requests_total{")}
    result = {"rate_per_s": args.rate, "seconds": args.seconds, "distinct_requests": len(bodies),
              "http": {**_pct(lat), "errors": n_err, **extra}, "answered_by": sources,
              "encoder_alone_one_utterance": _pct(enc), "decision_in_process_uncached": _pct(dec), "cpu": os.cpu_count()}
    if args.overload:
        result["overload"] = _overload_arms(args.model, keys, headers, bodies, args.overload_seconds)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
