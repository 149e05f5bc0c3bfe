"""A real `hub serve` subprocess with generated data, for the console's browser tests and screenshots."""
from __future__ import annotations

import contextlib
import json
import os
import pathlib
import socket
import subprocess

from tests.conftest import TEST_KEYS
import sys
import time

import httpx

from hub.bench.generate import read_records, read_systems, write

BIN = pathlib.Path(sys.executable).parent
SYSTEM = "mutation($input: SourceSystemInput!) { registerSourceSystem(input: $input) { name } }"
REGISTER = """mutation($system: String!, $records: [SourceRecordInput!]!) {
  registerRecords(system: $system, records: $records) { action } }"""


def free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


class Hub:
    """Migrate a database, mint tokens, start `hub serve` on a port, load generated people."""

    def __init__(self, workdir: pathlib.Path, database_url: str, port: int) -> None:
        self.workdir, self.port = workdir, port
        self.url = f"http://127.0.0.1:{port}"
        # keys for personal data at rest: PostgreSQL needs them configured (SQLite would create a key file)
        self.env = {**os.environ, "HUB_DATABASE_URL": database_url, "HUB_KEYS": TEST_KEYS,
                    "HUB_QUALITY_CACHE_SECONDS": "0"}
        self.process: subprocess.Popen | None = None
        self.tokens: dict[str, str] = {}

    def hub(self, *args: str) -> str:
        out = subprocess.run([str(BIN / "hub"), *args], env=self.env, cwd=self.workdir, capture_output=True,
                             text=True, check=True)
        return out.stdout.strip()

    def start(self) -> None:
        self.hub("migrate")
        for role in ("admin", "steward", "reader"):
            self.tokens[role] = self.hub("token", "create", "--subject", f"console-{role}", "--role", role)
        self.log = open(self.workdir / "serve.log", "w")
        self.process = subprocess.Popen([str(BIN / "hub"), "serve", "--port", str(self.port)], env=self.env,
                                        cwd=self.workdir, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            if self.process.poll() is not None:
                raise RuntimeError("hub serve exited: " + (self.workdir / "serve.log").read_text())
            time.sleep(0.3)
        raise RuntimeError("hub serve did not become ready")

    def gql(self, query: str, role: str = "admin", **variables) -> dict:
        r = httpx.post(self.url + "/graphql", json={"query": query, "variables": variables},
                       headers={"authorization": f"Bearer {self.tokens[role]}"}, timeout=600)
        body = r.json()
        if body.get("errors"):
            raise RuntimeError(json.dumps(body["errors"])[:500])
        return body["data"]

    def load(self, people: int, seed: int = 7) -> dict:
        """Generate `people` people across five systems and register them; return the generator's manifest."""
        data = self.workdir / f"data-{people}"
        if not (data / "systems.json").exists():
            write(str(data), people, seed=seed)
        for s in read_systems(str(data)):
            self.gql(SYSTEM, input=s)
        for s in read_systems(str(data)):
            records = read_records(str(data), s["name"])
            for i in range(0, len(records), 1000):
                self.gql(REGISTER, system=s["name"], records=records[i:i + 1000])
        return json.loads((data / "manifest.json").read_text())

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.process = None
            self.log.close()
