"""Helpers of the tests that start a server (JupyterLab, Voilà) in a session of its own."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import psutil


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_session(proc: subprocess.Popen) -> None:
    """Stop a server started with ``start_new_session=True`` and everything it started
    (its kernels share the session): SIGTERM, then SIGKILL if it lingers."""
    try:  # the whole session, even when the server itself has gone (dump_stacks)
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def dump_stacks(proc: subprocess.Popen) -> None:
    """Make the server and its kernels print every thread's Python stack to their stderr (the
    server's log) and die: SIGABRT, which ``PYTHONFAULTHANDLER=1`` in their environment turns
    into a traceback dump. For a test that found the server stuck."""
    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for p in reversed(family):  # kernels first: the server stays up to flush the log
        try:
            p.send_signal(signal.SIGABRT)
        except psutil.NoSuchProcess:
            pass
        time.sleep(1.0)
