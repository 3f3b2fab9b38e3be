"""`make lab` (the README's way to run the notebooks locally) starts JupyterLab and runs a chapter.

The test starts the server as a reader does, with `make lab`, loads the JupyterLab page, opens a
chapter through the server's REST API and runs every code cell on the server's kernel over its
websocket, as the browser would when the reader picks "Run All".
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import nbformat
from tornado.websocket import websocket_connect

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = "en/book/01_background.ipynb"  # `make lab` serves readers/: the reader notebooks
START_SECONDS = 180
CELL_SECONDS = 600


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url: str, data: dict | None = None) -> tuple[int, str]:
    body = None if data is None else json.dumps(data).encode()
    req = urllib.request.Request(url, data=body, method="GET" if data is None else "POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as response:
        return response.status, response.read().decode()


def wait_until_up(server: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"`make lab` exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if request(url)[0] == 200:
                return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(1)
    raise AssertionError(f"JupyterLab did not answer within {START_SECONDS} s:\n{log.read_text()[-3000:]}")


def message(msg_type: str, content: dict, session: str) -> dict:
    header = {"msg_id": uuid.uuid4().hex, "msg_type": msg_type, "session": session, "username": "test",
              "version": "5.3", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    return {"header": header, "parent_header": {}, "metadata": {}, "content": content,
            "channel": "shell", "buffers": []}


async def run_cells(url: str, sources: list[str]) -> list[dict]:
    """Execute ``sources`` in order on the kernel behind ``url``; the reply content of each cell."""
    connection = await websocket_connect(url)
    session, replies = uuid.uuid4().hex, []
    try:
        for msg_type, content in [("kernel_info_request", {})] + [
            ("execute_request", {"code": code, "silent": False, "store_history": True,
                                 "user_expressions": {}, "allow_stdin": False, "stop_on_error": True})
            for code in sources
        ]:
            sent = message(msg_type, content, session)
            await connection.write_message(json.dumps(sent))
            deadline = time.monotonic() + CELL_SECONDS
            while True:
                raw = await asyncio.wait_for(connection.read_message(), deadline - time.monotonic())
                assert raw is not None, "the kernel's websocket closed"
                reply = json.loads(raw)
                if (reply.get("parent_header", {}).get("msg_id") == sent["header"]["msg_id"]
                        and reply.get("channel") == "shell"):
                    break
            if msg_type == "execute_request":
                replies.append(reply["content"])
                if reply["content"]["status"] != "ok":
                    break
    finally:
        connection.close()
    return replies


def test_make_lab_starts_jupyterlab_and_runs_a_chapter(tmp_path):
    port, token = free_port(), secrets.token_hex(16)
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "lab.log"
    args = f"--no-browser --ip=127.0.0.1 --port={port} --IdentityProvider.token={token}"
    if os.geteuid() == 0:  # CI runs as root, which Jupyter refuses unless told
        args += " --allow-root"
    # Jupyter's runtime files (connection files, server info) go to the test's folder.
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    with log.open("w") as out:
        server = subprocess.Popen(["make", "--no-print-directory", "lab", f"LAB_ARGS={args}"], cwd=ROOT,
                                  env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_up(server, f"{base}/api/status?token={token}", log)
        status, page = request(f"{base}/lab?token={token}")
        assert status == 200 and "JupyterLab" in page, page[:500]
        status, body = request(f"{base}/api/sessions?token={token}",
                               {"path": CHAPTER, "type": "notebook", "name": CHAPTER, "kernel": {"name": "python3"}})
        assert status == 201, body
        kernel = json.loads(body)["kernel"]["id"]
        cells = [c for c in nbformat.read(ROOT / "readers" / CHAPTER, as_version=4).cells if c.cell_type == "code"]
        url = f"ws://127.0.0.1:{port}/api/kernels/{kernel}/channels?token={token}"
        replies = asyncio.run(run_cells(url, [c.source for c in cells]))
        failed = [r for r in replies if r["status"] != "ok"]
        assert not failed, (f"{CHAPTER}, code cell {len(replies) - 1}: "
                            f"{failed[0].get('ename')}: {failed[0].get('evalue')}")
        assert len(replies) == len(cells), (len(replies), len(cells))
    finally:
        stop(server)


def stop(server: subprocess.Popen) -> None:
    """End `make` and the server it started (they share a process group)."""
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
    except ProcessLookupError:  # already gone
        pass
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
