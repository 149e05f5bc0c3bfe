"""Done-when: the hub dies between commit and publish; after a restart every consumer gets every change
exactly once, in order. A real `hub serve` subprocess (SIGKILL), NATS JetStream, a websocket
subscription and the JSON-lines stream."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid

import httpx
import pytest
from sqlalchemy import text

from tests.conftest import mint
from tests.helpers import REGISTER, SYSTEM

PORT = 8161
NATS = ("127.0.0.1", 4222)
SUBSCRIBE = "subscription($after: Position) { customerChanged(after: $after) { position customerId kind } }"


def _listening(address: tuple[str, int]) -> bool:
    try:
        socket.create_connection(address, timeout=0.5).close()
        return True
    except OSError:
        return False


def _need_nats() -> None:
    if not _listening(NATS):
        why = "is not installed" if shutil.which("nats-server") is None and not os.path.exists(
            "/usr/sbin/nats-server") else "is not running"
        pytest.skip(f"nats-server {why} at 127.0.0.1:4222 (.ci/run starts it when installed)")


class Hub:
    """`hub serve` on PORT as a child process."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env, self.proc = env, None

    async def start(self, **extra: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "serve", "--port", str(PORT)],
                                     env={**self.env, **extra}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        async with httpx.AsyncClient() as client:
            for _ in range(300):
                try:
                    if (await client.get(f"http://127.0.0.1:{PORT}/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if self.proc.poll() is not None:
                    raise AssertionError(f"hub serve exited: {self.proc.stderr.read().decode()[-2000:]}")
                await asyncio.sleep(0.1)
        raise AssertionError("hub serve did not become ready")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


async def _post(token: str, query: str, **variables) -> dict:
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.post(f"http://127.0.0.1:{PORT}/graphql", json={"query": query, "variables": variables},
                              headers={"Authorization": f"Bearer {token}"})
    body = r.json()
    assert not body.get("errors"), body
    return body["data"]


async def _subscription(token: str, after: int, count: int) -> list[dict]:
    """`count` changes after `after` over graphql-transport-ws."""
    import websockets

    out = []
    async with websockets.connect(f"ws://127.0.0.1:{PORT}/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(json.dumps({"id": "1", "type": "subscribe",
                                  "payload": {"query": SUBSCRIBE, "variables": {"after": after}}}))
        while len(out) < count:
            msg = json.loads(await asyncio.wait_for(ws.recv(), timeout=30))
            assert msg["type"] == "next", msg
            out.append(msg["payload"]["data"]["customerChanged"])
    return out


async def _stream_messages(stream: str) -> list[dict]:
    """Every message the NATS stream holds, in stream order."""
    import nats

    nc = await nats.connect(f"nats://{NATS[0]}:{NATS[1]}")
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(stream, seq)
            out.append(json.loads(msg.data))
        return out
    finally:
        await nc.close()


async def _delete_stream(stream: str) -> None:
    import nats

    nc = await nats.connect(f"nats://{NATS[0]}:{NATS[1]}")
    try:
        await nc.jetstream().delete_stream(stream)
    except Exception:  # noqa: BLE001 - already gone
        pass
    finally:
        await nc.close()


async def test_every_consumer_gets_every_change_once_in_order_across_a_kill(db, db_url):
    _need_nats()
    if _listening(("127.0.0.1", PORT)):
        pytest.skip(f"port {PORT} is taken")
    tag = uuid.uuid4().hex[:8]
    stream, subject = f"HUB_TEST_{tag}", f"hubtest.{tag}"
    env = {**os.environ, "HUB_DATABASE_URL": db_url, "HUB_PUBLISH": "nats", "HUB_NATS_STREAM": stream,
           "HUB_NATS_SUBJECT": subject, "HUB_PUBLISH_ROLE": "reader"}
    admin, reader = await mint(db, "admin", "ops"), await mint(db, "reader", "app")
    hub = Hub(env)
    try:
        # a publisher that looks only every 60 s: what is committed now is not published before the kill
        await hub.start(HUB_EVENTS_POLL_SECONDS="60")
        await _post(admin, SYSTEM, input={"name": "crm", "dateOrder": "YMD", "trust": 50})
        people = [{"key": f"K{i}", "attributes": {"givenName": f"Ann{i}", "familyName": "Berg",
                                                  "email": f"ann{i}@x.org", "nationalId": f"123-45-{i:04d}"}}
                  for i in range(6)]
        await _post(admin, REGISTER, system="crm", records=people[:3])
        # a subscriber that already saw the first change (its poll is not the publisher's)
        seen = await _subscription(reader, 0, 1)
        await _post(admin, REGISTER, system="crm", records=people[3:])
        hub.kill()  # committed, not yet published
        async with db.reader() as conn:
            stored = (await conn.execute(text("SELECT position FROM event_consumer"))).scalars().all()
            last = (await conn.execute(text("SELECT last FROM outbox_head"))).scalar()
        assert stored == [] and last == 6

        await hub.start(HUB_EVENTS_POLL_SECONDS="0.1")
        seen += await _subscription(reader, seen[-1]["position"], 5)
        for _ in range(300):
            async with db.reader() as conn:
                done = (await conn.execute(text("SELECT position FROM event_consumer WHERE name = 'nats'"))).scalar()
            if done == last:
                break
            await asyncio.sleep(0.1)
        assert done == last
        # died after publishing but before storing its progress: everything is sent again, the broker drops it
        hub.kill()
        async with db.engine.begin() as conn:
            await conn.execute(text("UPDATE event_consumer SET position = 2 WHERE name = 'nats'"))
        await hub.start(HUB_EVENTS_POLL_SECONDS="0.1")
        for _ in range(300):
            async with db.reader() as conn:
                done = (await conn.execute(text("SELECT position FROM event_consumer WHERE name = 'nats'"))).scalar()
            if done == last:
                break
            await asyncio.sleep(0.1)
        assert done == last
        hub.kill()

        published = await _stream_messages(stream)
        assert [m["position"] for m in published] == [1, 2, 3, 4, 5, 6]
        assert all("nationalId" not in m["values"] for m in published)  # the reader's view
        assert [c["position"] for c in seen] == [1, 2, 3, 4, 5, 6]
        assert len({c["customerId"] for c in seen}) == 6

        from click.testing import CliRunner

        from hub.cli import main
        from hub.config import get_settings

        os.environ["HUB_DATABASE_URL"], saved = db_url, os.environ.get("HUB_DATABASE_URL")
        get_settings.cache_clear()
        try:
            result = await asyncio.to_thread(CliRunner().invoke, main, ["events", "--after", "0"])
        finally:
            if saved is None:
                os.environ.pop("HUB_DATABASE_URL", None)
            else:
                os.environ["HUB_DATABASE_URL"] = saved
            get_settings.cache_clear()
        lines = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
        assert [c["position"] for c in lines] == [1, 2, 3, 4, 5, 6]
    finally:
        hub.kill()
        await _delete_stream(stream)


async def test_websocket_without_a_valid_token_is_closed(db, db_url):
    import websockets

    if _listening(("127.0.0.1", PORT)):
        pytest.skip(f"port {PORT} is taken")
    hub = Hub({**os.environ, "HUB_DATABASE_URL": db_url})
    try:
        await hub.start()
        async with websockets.connect(f"ws://127.0.0.1:{PORT}/graphql", subprotocols=["graphql-transport-ws"]) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": "Bearer hub_nope"}}))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), timeout=10)
        assert closed.value.rcvd.code == 4403
    finally:
        hub.kill()
