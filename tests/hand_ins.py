"""Code that hostile hand-ins append to a right answer, shared by the grader's tests and the probe."""

from __future__ import annotations


def fork_server_sabotage(signal_name: str) -> str:
    """Lines that send ``signal.<signal_name>`` (KILL, STOP) to the fork server the hand-in's
    process comes from: the grader must replace it before the next hand-in."""
    return (
        "\nimport os, signal\n"
        "def _parent(pid):\n"
        "    for line in open(f'/proc/{pid}/status'):\n"
        "        if line.startswith('PPid:'):\n"
        "            return int(line.split()[1])\n"
        "_pid, _servers = os.getpid(), []\n"
        "for _ in range(4):\n"
        "    _pid = _parent(_pid)\n"
        "    if b'forkserver' in open(f'/proc/{_pid}/cmdline', 'rb').read():\n"
        "        _servers.append(_pid)\n"
        f"os.kill(_servers[-1], signal.{signal_name})\n")
