"""``make lab`` opens the workbook: the server lists the notebooks and runs notebook 05's code.

The test asks make for the exact command of the ``lab`` target (``make -n``, with the
interpreter running these tests as ``BIN``), starts it headless on 127.0.0.1 and a free
port with a token, then talks to the server as JupyterLab's front end does: the REST API
for the file list and a kernel, the kernel's websocket for one ``execute_request``. The
server is always stopped, and a failure prints its log.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from _servers import free_port, stop_session

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.name for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
START_S = 120      # the server answering /api/status
KERNEL_S = 120     # a kernel answering one execute_request


def _lab_command(port: int, token: str) -> str:
    """The ``make lab`` recipe as make would run it (the venv already built)."""
    args = (f"--no-browser --port={port} --ServerApp.ip=127.0.0.1 "
            f"--IdentityProvider.token={token}")
    out = subprocess.run(["make", "-s", "-n", "-o", ".venv/.installed-stamp", "lab",
                          f"BIN={Path(sys.executable).parent}", f"LAB_ARGS={args}"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    lines = [ln for ln in out.splitlines() if "jupyter" in ln]
    assert len(lines) == 1, f"`make -n lab` printed {out!r}"
    return lines[0]


def _get(url: str, token: str, method: str = "GET", body: dict | None = None):
    req = urllib.request.Request(url, method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"token {token}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read() or b"null")


def _wait_until_up(base: str, token: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"`make lab` exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            _get(base + "api/status", token)
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"JupyterLab did not answer within {START_S} s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def lab(tmp_path):
    port, token = free_port(), secrets.token_hex(16)
    cmd = _lab_command(port, token)
    log = tmp_path / "lab.log"
    # A private Jupyter runtime folder, so the test leaves no server files behind.
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    with log.open("w") as fh:
        proc = subprocess.Popen(shlex.split(cmd), cwd=REPO, env=env, stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}/"
    try:
        _wait_until_up(base, token, proc, log)
        yield base, token, log
    finally:
        stop_session(proc)


def _first_code_cell(name: str) -> str:
    nb = json.loads((REPO / "notebooks" / name).read_text())
    return next("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")


def _execute(base: str, token: str, kernel_id: str, code: str) -> tuple[str, str]:
    """Run ``code`` in the kernel over its websocket: (reply status, stdout)."""
    import websocket
    ws = websocket.create_connection(
        base.replace("http", "ws") + f"api/kernels/{kernel_id}/channels?token={token}",
        timeout=KERNEL_S)
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test",
                   "session": uuid.uuid4().hex, "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False,
                    "user_expressions": {}, "allow_stdin": False}}))
    status, idle, stdout = None, False, []
    deadline = time.monotonic() + KERNEL_S
    try:
        # The reply (shell) and the output (iopub) travel on different channels: wait for
        # both the reply and the kernel's 'idle' after this request.
        while not (status and idle) and time.monotonic() < deadline:
            msg = json.loads(ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if kind == "stream" and msg["content"]["name"] == "stdout":
                stdout.append(msg["content"]["text"])
            elif kind == "error":
                stdout.append("\n".join(msg["content"]["traceback"]))
            elif kind == "execute_reply":
                status = msg["content"]["status"]
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                idle = True
    finally:
        ws.close()
    return status or "no reply", "".join(stdout)


def test_make_lab_lists_the_notebooks_and_runs_notebook_05(lab):
    base, token, log = lab
    listed = {e["name"] for e in _get(base + "api/contents/", token)["content"]}
    assert set(NOTEBOOKS) <= listed, f"the server lists {sorted(listed)}"
    specs = _get(base + "api/kernelspecs", token)
    assert specs["default"] == "python3" and "python3" in specs["kernelspecs"]
    # The notebooks' kernelspec is the one the server offers.
    for name in NOTEBOOKS:
        meta = json.loads((REPO / "notebooks" / name).read_text())["metadata"]["kernelspec"]
        assert meta["name"] == specs["default"], name
    kernel = _get(base + "api/kernels", token, "POST", {"name": "python3"})
    code = _first_code_cell("05_detection_explorer.ipynb") + "\nimport sys; print(sys.prefix)"
    status, out = _execute(base, token, kernel["id"], code)
    assert status == "ok", f"{out}\n--- server log ---\n{log.read_text()[-3000:]}"
    # The kernel is this environment's Python (make lab serves the .venv kernel).
    assert out.strip().splitlines()[-1] == sys.prefix
