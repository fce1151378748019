"""Announce 10,000 Candidates end to end over HTTP, on SQLite and PostgreSQL; GET it back; peak server RSS.

Targets (issue "Foundation"): announce < 3 s, GET < 1 s, peak RSS < 400 MB. The baseline is a bare
executemany of the same rows into one table in this process, so the ratio shows what Loom's
validation, merge and HTTP cost on top of the database itself.

    .venv/bin/python bench/announce.py [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import JSON, Column, MetaData, String, Table, create_engine, insert, text

ROOT = Path(__file__).resolve().parents[1]
N = 10_000


def announcement(migration_id: str) -> dict:
    return {
        "id": migration_id,
        "name": "Bench migration",
        "description": "10,000 Candidates with 5 metadata keys and 2 file groups each",
        "requiredInputs": [{"name": "targetImage", "label": "Target image"}],
        "steps": [{"name": f"step-{i}", "migratorApp": "bench"} for i in range(5)],
        "candidates": [
            {
                "id": f"svc-{i:05d}",
                "kind": "service",
                "metadata": {
                    "team": f"team-{i % 40}",
                    "tier": str(i % 3),
                    "lang": "go",
                    "owner": f"o{i}",
                    "repoName": f"svc-{i}",
                },
                "files": [
                    {
                        "name": "app-repo",
                        "repo": f"svc-{i}",
                        "files": [{"path": "Dockerfile", "url": f"https://git/svc-{i}/Dockerfile"}],
                    },
                    {
                        "name": "gitops",
                        "repo": "gitops",
                        "files": [{"path": f"apps/svc-{i}/values.yaml", "url": "https://git/gitops"}],
                    },
                ],
            }
            for i in range(N)
        ],
        "migratorUrl": "http://127.0.0.1:9",
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def baseline_seconds(url: str, body: dict) -> float:
    """Insert the same rows with a bare executemany: the floor any store must pay."""
    engine = create_engine(url)
    table = Table(
        f"bench_{uuid.uuid4().hex[:8]}", MetaData(), Column("id", String, primary_key=True), Column("doc", JSON)
    )
    table.create(engine)
    try:
        started = time.perf_counter()
        with engine.begin() as connection:
            connection.execute(
                insert(table), [{"id": c["id"], "doc": c} for c in json.loads(json.dumps(body["candidates"]))]
            )
        return time.perf_counter() - started
    finally:
        table.drop(engine)
        engine.dispose()


def run(label: str, url: str) -> None:
    port = free_port()
    migrator_token, operator_token = (f"loom_{kind}_{secrets.token_urlsafe(32)}" for kind in "mo")
    tokens = f"migrator:bench={migrator_token},operator:bench:viewer={operator_token}"
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "_registry_server.py"), url, str(port)],
        cwd=ROOT,
        env={**os.environ, "LOOM_BOOTSTRAP_TOKENS": tokens},
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                httpx.get(f"{base}/api/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        migration_id = f"bench-{uuid.uuid4().hex[:8]}"
        body = announcement(migration_id)
        payload = json.dumps(body).encode()
        as_migrator = {"content-type": "application/json", "Authorization": f"Bearer {migrator_token}"}
        with httpx.Client(timeout=120, headers={"Authorization": f"Bearer {operator_token}"}) as client:
            started = time.perf_counter()
            response = client.post(f"{base}/api/registry/announce", content=payload, headers=as_migrator)
            announce_s = time.perf_counter() - started
            response.raise_for_status()
            started = time.perf_counter()
            again = client.post(f"{base}/api/registry/announce", content=payload, headers=as_migrator)
            reannounce_s = time.perf_counter() - started
            again.raise_for_status()
            started = time.perf_counter()
            got = client.get(f"{base}/api/migrations/{migration_id}")
            get_s = time.perf_counter() - started
            got.raise_for_status()
            assert len(got.json()["candidates"]) == N
            started = time.perf_counter()
            client.get(f"{base}/api/migrations/{migration_id}/candidates", params={"limit": 50}).raise_for_status()
            page_s = time.perf_counter() - started
        rss = peak_rss_mb(server.pid)
        floor = baseline_seconds(url, body)
        print(
            f"{label:10s} announce {N:,} candidates ({len(payload) / 1e6:.1f} MB): {announce_s:.2f} s"
            f" | re-announce {reannounce_s:.2f} s | GET migration {get_s:.2f} s | first page of 50 {page_s * 1000:.0f} ms"
            f" | peak server RSS {rss:.0f} MB | bare insert {floor:.2f} s, ratio announce/bare {announce_s / floor:.1f}x"
        )
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run("SQLite", f"sqlite:///{tmp}/bench.db")
    engine = create_engine(args.postgres)
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    engine.dispose()
    run("PostgreSQL", args.postgres)


if __name__ == "__main__":
    main()
