"""A real MLflow tracking server for tests, started through mlflow/start.sh (the operators' script).

`start_mlflow(tmp)` runs it on a free port with a sqlite backend store and a local artifact
root served by the server itself, waits for /health, and returns a handle whose `stop()`
ends the process group it started. Start-up takes 10-30 s on two busy cores.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
START = REPO / "mlflow" / "start.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class MlflowServer:
    uri: str
    state: Path
    proc: subprocess.Popen
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def start_mlflow(state: Path, timeout_s: float = 150.0) -> MlflowServer:
    port = free_port()
    state.mkdir(parents=True, exist_ok=True)
    log = state / "server.log"
    env = {**os.environ, "PSPE_MLFLOW_PORT": str(port), "PSPE_MLFLOW_STATE": str(state),
           "MLFLOW_BIN": str(Path(sys.executable).parent / "mlflow")}
    with open(log, "wb") as out:
        proc = subprocess.Popen(["bash", str(START)], env=env, stdout=out, stderr=subprocess.STDOUT,
                                cwd=state, start_new_session=True)
    server = MlflowServer(f"http://127.0.0.1:{port}", state, proc, log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{server.uri}/health", timeout=2) as r:
                if r.status == 200:
                    return server
        except OSError:
            pass
        time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"mlflow server not up after {timeout_s:.0f}s:\n{log.read_text()[-3000:]}")
