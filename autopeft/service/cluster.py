"""A private local Ray head with its job server, for a service started without a cluster to launch on.

``ray start --head --block`` in a session of its own: Ray's own process tree (GCS, raylet, the dashboard that serves
the job API, the workers) lives exactly as long as the service, and the whole session is ended with it, so no Ray
is left behind. Jobs launched on it survive nothing but the service: when it ends, their searches are stopped as
Ctrl-C stops them (running trials queued for resume) before the cluster goes, since a job's driver runs in a
session of its own. On a shared cluster (``--ray-address``) they outlive it, and a restarted service finds them
again by their metadata.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from autopeft.errors import UserError

# A stopped job gets this long to close its running trials as interrupted (Ctrl-C's path) before Ray kills it.
STOP_GRACE_S = 60
READY_TIMEOUT_S = 120


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free now. The probes stay bound until all are chosen: a port released by one probe
    may be the next probe's (the kernel hands a just-freed port out again), and Ray refuses to start when two of its
    components are given the same port."""
    with ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]


def job_server_url(address: str) -> str:
    """Ray's job server for a cluster address: ``http://...`` as given, ``host:6379`` -> ``http://host:8265``."""
    if address.startswith(("http://", "https://")):
        return address.rstrip("/")
    host = address.removeprefix("ray://").rsplit(":", 1)[0]
    return f"http://{host}:8265"


def use_ray_token() -> None:
    """Send Ray's token with job-server requests where the cluster may ask for one.

    Ray (2.60) turns token authentication on for a cluster whose head finds a token (``~/.ray/auth_token``,
    ``RAY_AUTH_TOKEN``), but its job client sends the token only when ``RAY_AUTH_MODE=token`` is set; ``ray.init``
    makes the same inference for the processes it starts. An explicit RAY_AUTH_MODE is left as it is."""
    if "RAY_AUTH_MODE" not in os.environ and _token_available():
        os.environ["RAY_AUTH_MODE"] = "token"


def _token_available() -> bool:
    """Whether Ray finds a token: given by environment, or in ``~/.ray/auth_token``."""
    return bool(os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
                or (Path.home() / ".ray" / "auth_token").is_file())


def wait_for_job_server(url: str, timeout_s: float = READY_TIMEOUT_S, alive=lambda: True) -> None:
    """Block until the job server answers (a fresh head takes seconds to start its dashboard)."""
    from ray.job_submission import JobSubmissionClient

    deadline = time.monotonic() + timeout_s
    problem: Exception | None = None
    while time.monotonic() < deadline and alive():
        try:
            JobSubmissionClient(url).list_jobs()
            return
        except Exception as exc:  # connection refused while it starts, and the like
            problem = exc
            time.sleep(1)
    raise UserError(f"--ray-address: Ray's job server at {url} does not answer ({problem}); is the cluster's head "
                    f"up, with its dashboard (ray start --head --dashboard-host=0.0.0.0)?")


@contextmanager
def local_cluster(num_cpus: int) -> Iterator[str]:
    """Start a local Ray head with ``num_cpus`` CPUs for trials; yields its job server's URL."""
    ray = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    if ray is None:
        raise UserError("the `ray` command is not installed; pip install 'ray[default]'")
    port, dashboard, *agent_ports = free_ports(7)
    log = tempfile.NamedTemporaryFile(prefix="autopeft-ray-", suffix=".log", delete=False)
    # Token authentication on, as Ray sets it for the clusters ray.init starts; this process, the jobs' drivers and
    # their workers (which inherit the variable) send the token.
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    if os.environ["RAY_AUTH_MODE"] == "token":
        _ensure_token(ray)
    # No drain on SIGTERM: the head goes when the service goes (Ray would otherwise wait for its node to drain, a
    # pause meant for serving replicas on a shared cluster).
    environment = {**os.environ, "RAY_JOB_STOP_WAIT_TIME_S": str(STOP_GRACE_S), "RAY_USAGE_STATS_ENABLED": "0",
                   "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
    # Every port Ray would otherwise take at a fixed default (the job agent's 52365, the client server's 10001, ...)
    # is a free one: another Ray on the machine (a search's private one) holds the defaults, and a job agent that
    # cannot bind leaves the job server answering "No available agent to submit job".
    own_ports = [f"--{option}={agent_port}" for option, agent_port in zip((
        "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port", "metrics-export-port",
        "ray-client-server-port"), agent_ports, strict=True)]
    # A temp dir of its own. Ray hands each job's driver the address in TEMP_DIR/ray_current_cluster, a file every
    # `ray start` on the machine rewrites: in the shared /tmp/ray, a cluster started after the service's (a second
    # service, a dashboard that launches searches, a colleague's) took the service's next jobs (refused there for
    # another token, or run there).
    own_temp = tempfile.mkdtemp(prefix="autopeft-ray-")
    process = subprocess.Popen(
        [ray, "start", "--head", f"--port={port}", f"--dashboard-port={dashboard}", "--dashboard-host=127.0.0.1",
         "--include-dashboard=true", f"--num-cpus={num_cpus}", "--disable-usage-stats", f"--temp-dir={own_temp}",
         *own_ports, "--block"],
        stdout=log, stderr=subprocess.STDOUT, env=environment, start_new_session=True)
    log.close()  # the head writes through its own copy of the descriptor; the file stays for the error messages
    url = f"http://127.0.0.1:{dashboard}"
    started = False
    try:
        try:
            wait_for_job_server(url, alive=lambda: process.poll() is None)
        except UserError:
            raise UserError(f"could not start a local Ray cluster; its log: {log.name}") from None
        if process.poll() is not None:
            raise UserError(f"the local Ray cluster exited at start; its log: {log.name}")
        started = True
        yield url
    finally:
        if process.poll() is None:
            _stop_jobs(url)
        _end_session(process)
        shutil.rmtree(own_temp, ignore_errors=True)
        if started:  # the log is named only by a failed start; one was left in the temp folder per service run
            Path(log.name).unlink(missing_ok=True)


def _ensure_token(ray: str) -> None:
    """Make Ray's token where there is none. ``ray.init`` makes one for the cluster it starts, but ``ray start``
    in token mode refuses to start without one ("no authentication token was found"), so on a machine where Ray
    never ran the service's head would not start. ``ray get-auth-token --generate`` writes ``~/.ray/auth_token``,
    where every later Ray process looks; a token given by environment is left as it is."""
    if _token_available():
        return
    made = subprocess.run([ray, "get-auth-token", "--generate"], capture_output=True, text=True)
    if made.returncode != 0 or not _token_available():
        raise UserError(f"could not make Ray's authentication token (ray get-auth-token --generate): "
                        f"{(made.stderr or made.stdout).strip()[-500:]}; make one with that command, or set "
                        f"RAY_AUTH_MODE=disabled for a private cluster")


def _stop_jobs(url: str, timeout_s: float = STOP_GRACE_S + 15) -> None:
    """Stop the cluster's running jobs (SIGTERM: a search takes Ctrl-C's path) and wait for them to end."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    active = (JobStatus.PENDING, JobStatus.RUNNING)
    try:
        client = JobSubmissionClient(url)
        running = [job.submission_id for job in client.list_jobs() if job.status in active]
        for submission_id in running:
            client.stop_job(submission_id)
        deadline = time.monotonic() + timeout_s
        while running and time.monotonic() < deadline:
            time.sleep(1)
            running = [i for i in running if client.get_job_status(i) in active]
    except Exception:  # the job server is gone already: its jobs' drivers go with the session below
        return


def _end_session(process: subprocess.Popen) -> None:
    """SIGTERM to every process of the head's session (Ray's processes and its workers, each in a process group of
    its own), then SIGKILL what is left."""
    import psutil

    for sig, wait_s in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        members = [p for p in psutil.process_iter() if _session_of(p) == process.pid]
        if not members:
            break
        for member in members:
            with contextlib.suppress(psutil.Error):
                member.send_signal(sig)
        _, alive = psutil.wait_procs(members, timeout=wait_s)
        if not alive:
            break
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=1)


def _session_of(process) -> int | None:
    try:
        return os.getsid(process.pid)
    except OSError:
        return None
