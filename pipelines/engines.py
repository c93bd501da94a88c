"""Where a training job runs: one engine interface, two implementations.

    local  a detached subprocess of the server (the default; needs nothing extra)
    ray    a job on a Ray cluster, submitted through Ray's Job Submission API

Both run the same command, `python -m pipelines.<task> train --run-dir <run folder> ...`,
and the job itself writes its run folder (status, metrics, log, checkpoints, card) and
promotes through the registry exactly as a local job does. So with Ray the runs and
models folders must be storage the cluster shares with the server, mounted at the same
path on every machine (README: "Training on a Ray cluster").

The engine is chosen per run: `--engine` / the page's choice, else Ray when RAY_ADDRESS is
set, else local. It is recorded in the run folder (engine.json), so status, Stop and
"where does it run" ask the right engine later, from any process:

    submit(run, args)        start the job
    reconcile(run, status)   the run's status corrected by what the engine knows
                             (a Ray job that died on a worker: failed, with its last log lines)
    stop(run)                ask the engine to stop it (Ray: stop_job; Stop is also a STOP file)
    kill(run)                hard stop
    where(run)               in words: "this server (pid 123)" or "Ray http://head:8265, job digits-..."

Ray is an optional dependency (requirements-ray.txt); this module imports it only when a
Ray run is submitted or asked about.

Ray settings come from the environment:
    RAY_ADDRESS      the head's dashboard address, e.g. http://head:8265 (also chooses Ray)
    RAY_RUNTIME_ENV  a JSON runtime env replacing the default one, which ships the project
                     (working_dir) and pip-installs requirements.txt on the workers; `{}`
                     when the workers already share the server's install at the same path
    RAY_JOB_CPUS     CPUs reserved per job (default: 2, at most the biggest node's)
    RAY_JOB_GPUS     GPUs per job (default: 1 when the cluster has a GPU, else 0)
    RAY_JOB_PYTHON   the interpreter on the workers (default: `python` of the runtime env
                     when it installs packages, else this server's own interpreter path)
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import sys
import time
from pathlib import Path

from pipelines import core, runs

ENGINES = ("local", "ray")
ENGINE_FILE = "engine.json"
INSTALL_RAY = "pip install -r requirements-ray.txt"  # `.venv/bin/pip ...` in this project's venv
DEFAULT_CPUS = 2
JOB_ID_VAR = "TRAINING_JOB_ID"  # set in a Ray job's environment: the job knows it is the job
STATUS_TTL_S = 1.0  # the page asks for a run's status several times per refresh: one Ray call is enough
# What the default runtime env leaves out of the project copy shipped to the workers
# (the runs and models folders are shared storage, never copies).
EXCLUDES = [".venv", ".git", "runs", "models", "feedback", "bench/results", "tests", "**/__pycache__", "*.npz"]


class EngineUnavailable(ConnectionError):
    """The chosen engine cannot be used (Ray not installed, no address, cluster unreachable).
    A ConnectionError, so callers that already show OSError messages show this one too."""


# ---------------------------------------------------------------- choosing


def choose(name: str | None = None, address: str | None = None) -> Engine:
    """The engine for a new run: `name` if given, else Ray when RAY_ADDRESS is set, else local."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    name = name or ("ray" if address else "local")
    if name == "local":
        return LocalEngine()
    if name != "ray":
        raise EngineUnavailable(f"unknown engine {name!r}: use {' or '.join(ENGINES)}")
    require_ray()
    if not address:
        raise EngineUnavailable("The Ray engine needs the cluster's address: set RAY_ADDRESS to the head's "
                                "dashboard address, e.g. RAY_ADDRESS=http://head:8265 (see the README).")
    return RayEngine(address)


def default_name() -> str:
    """The engine a run gets when nobody chooses: Ray when RAY_ADDRESS is set, else local."""
    return "ray" if os.environ.get("RAY_ADDRESS") else "local"


def available() -> dict[str, str]:
    """What the page can offer: {engine: "" when usable, else why not, in one line}."""
    reasons = {"local": ""}
    try:
        require_ray()
        reasons["ray"] = "" if os.environ.get("RAY_ADDRESS") else "set RAY_ADDRESS=http://<head>:8265 to use Ray"
    except EngineUnavailable as exc:
        reasons["ray"] = str(exc)
    return reasons


def require_ray() -> None:
    try:
        import ray.job_submission  # noqa: F401
    except ImportError:
        raise EngineUnavailable(f"The Ray engine needs Ray, which is not installed: run `{INSTALL_RAY}` "
                                "(in this project: `.venv/bin/pip install -r requirements-ray.txt`).") from None


def record(run: runs.Run) -> dict:
    """The run's engine record (engine.json); a run without one ran locally."""
    return core.read_json(run.dir / ENGINE_FILE, {}) or {"engine": "local"}


def of(run: runs.Run) -> Engine:
    """The engine a run was submitted to, rebuilt from its record."""
    rec = record(run)
    return RayEngine(rec["address"]) if rec.get("engine") == "ray" and rec.get("address") else LocalEngine()


def where(run: runs.Run) -> dict:
    """Where a run runs, for the page: {"engine", "label", "address", "job_id"}."""
    rec = record(run)
    return {"engine": rec.get("engine", "local"), "label": of(run).where(run),
            "address": rec.get("address"), "job_id": rec.get("job_id")}


def log_tail(run: runs.Run, n: int = 20) -> str:
    """The job's last log lines wherever it ran: the run folder's log, else what the engine kept
    (a Ray job that failed before it could write there, e.g. while installing its requirements)."""
    return run.log_tail(n) or of(run).engine_log_tail(run, n)


def train_command(run: runs.Run, args: list[str], python: str = sys.executable) -> list[str]:
    return [python, "-u", "-m", f"pipelines.{run.task}", "train", "--run-dir", str(run.dir), *args]


# ---------------------------------------------------------------- the interface


class Engine:
    """What every engine does; see the module docstring."""

    name = "base"

    def submit(self, run: runs.Run, args: list[str]) -> None:
        raise NotImplementedError

    def reconcile(self, run: runs.Run, status: dict) -> dict:
        return status

    def stop(self, run: runs.Run) -> None:
        """Nothing beyond the STOP file (Run.request_stop writes it; the job polls for it)."""

    def kill(self, run: runs.Run) -> None:
        raise NotImplementedError

    def where(self, run: runs.Run) -> str:
        raise NotImplementedError

    def engine_log_tail(self, run: runs.Run, n: int) -> str:
        return ""


class LocalEngine(Engine):
    """A detached subprocess of the server (runs.start_local); liveness by pid (Run.status)."""

    name = "local"

    def submit(self, run, args):
        core.write_json(run.dir / ENGINE_FILE, {"engine": "local", "host": socket.gethostname()})
        runs.start_local(run, args)

    def kill(self, run):
        runs.kill_local(run)

    def where(self, run):
        pid = run.status().get("pid") or runs._read_pid(run.dir / "pid")[0]
        host = record(run).get("host")
        return "local: this server" + (f" ({host})" if host else "") + (f", pid {pid}" if pid else "")


class RayEngine(Engine):
    """A Ray job running the same command on a worker; the run folder is on shared storage."""

    name = "ray"
    _clients: dict = {}  # one client per address: creating one costs an HTTP round trip
    _seen: dict = {}  # (address, job id) -> (time, JobStatus, message): see STATUS_TTL_S

    def __init__(self, address: str):
        self.address = address

    # -- talking to the cluster
    def client(self):
        require_ray()
        from ray.job_submission import JobSubmissionClient

        if self.address not in self._clients:
            try:
                self._clients[self.address] = JobSubmissionClient(self.address)
            except Exception as exc:  # ConnectionError, ValueError for a bad address, ...
                raise EngineUnavailable(f"Cannot reach the Ray cluster at {self.address} "
                                        f"({type(exc).__name__}: {str(exc).strip()[:200]}). Is the head up, and is "
                                        "RAY_ADDRESS its dashboard address (http://<head>:8265)?") from None
        return self._clients[self.address]

    def job_info(self, job_id: str, fresh: bool = False) -> tuple[str, str]:
        """(Ray status name, Ray's message) of a job, at most STATUS_TTL_S old unless `fresh`."""
        key = (self.address, job_id)
        seen = self._seen.get(key)
        if fresh or not seen or time.time() - seen[0] > STATUS_TTL_S:
            try:
                info = self.client().get_job_info(job_id)
            except EngineUnavailable:
                raise
            except RuntimeError as exc:
                if "status code 404" not in str(exc):
                    raise self.unreachable(job_id, exc) from None
                info = None  # a restarted head forgets its jobs
            except Exception as exc:
                raise self.unreachable(job_id, exc) from None
            seen = self._seen[key] = (time.time(), "MISSING", "") if info is None else \
                (time.time(), str(getattr(info.status, "value", info.status)), info.message or "")
        return seen[1], seen[2]

    def unreachable(self, job_id: str, exc: Exception) -> EngineUnavailable:
        self._clients.pop(self.address, None)  # a restarted head needs a new client
        return EngineUnavailable(f"Cannot ask the Ray cluster at {self.address} about job {job_id} "
                                 f"({type(exc).__name__}: {str(exc).strip()[:200]}).")

    def nodes(self) -> list[dict]:
        """Total resources of each live node ({"CPU": 8.0, "GPU": 1.0, ...}); [] when unknown."""
        try:
            from ray.util.state import list_nodes

            return [n.resources_total for n in list_nodes(address=self.address, timeout=10)
                    if n.state == "ALIVE"]
        except Exception:  # an older head without the state API: fall back to the defaults
            return []

    # -- what a job asks for
    def resources(self, task: str) -> dict:
        """CPUs (RAY_JOB_CPUS, else 2 capped at the biggest node) and a GPU when the cluster has one
        (RAY_JOB_GPUS overrides): every task is a Keras model, so each can use a GPU."""
        nodes = self.nodes()
        biggest = max((n.get("CPU", 0) for n in nodes), default=0)  # 0: no worker yet (a head with --num-cpus 0)
        cpus = float(os.environ.get("RAY_JOB_CPUS") or (min(DEFAULT_CPUS, biggest) if biggest else DEFAULT_CPUS))
        has_gpu = any(n.get("GPU", 0) >= 1 for n in nodes)
        gpus = float(os.environ.get("RAY_JOB_GPUS") or (1 if has_gpu else 0))
        return {"entrypoint_num_cpus": max(cpus, 0.1), "entrypoint_num_gpus": gpus}

    def runtime_env(self, gpu: bool) -> dict:
        """RAY_RUNTIME_ENV if set, else the project shipped as working_dir plus requirements.txt
        (TensorFlow with CUDA instead of tensorflow-cpu when the job gets a GPU)."""
        if custom := os.environ.get("RAY_RUNTIME_ENV"):
            try:
                env = json.loads(custom)
            except ValueError as exc:
                raise EngineUnavailable(f"RAY_RUNTIME_ENV is not valid JSON ({exc}).") from None
            if not isinstance(env, dict):
                raise EngineUnavailable("RAY_RUNTIME_ENV must be a JSON object, e.g. {} or {\"pip\": [...]}.")
            return env
        return {"working_dir": str(core.ROOT), "excludes": EXCLUDES, "pip": requirements(gpu)}

    def job_env(self, runtime_env: dict, cpus: float, job_id: str = "") -> dict:
        """Environment of the job: the server's folders (absolute: they are shared storage),
        its thread budget, and the project on PYTHONPATH when it is not shipped."""
        env = {"RUNS_DIR": str(core.runs_dir().resolve()), "MODELS_DIR": str(core.models_dir().resolve()),
               "FEEDBACK_DIR": str(core.feedback_dir().resolve()), "JOB_THREADS": str(max(int(cpus), 1)),
               "PYTHONUNBUFFERED": "1", JOB_ID_VAR: job_id, **runs.QUIET_TF}
        if os.environ.get("DATA_DIR"):
            env["DATA_DIR"] = str(Path(os.environ["DATA_DIR"]).resolve())
        if "working_dir" not in runtime_env:
            env["PYTHONPATH"] = str(core.ROOT)
        return {**env, **runtime_env.get("env_vars", {})}

    def python(self, runtime_env: dict) -> str:
        installs = any(k in runtime_env for k in ("pip", "uv", "conda"))
        return os.environ.get("RAY_JOB_PYTHON") or ("python" if installs else sys.executable)

    # -- the interface
    def submit(self, run, args):
        job_id = f"{run.task}-{run.id}"
        wants = self.resources(run.task)
        env = self.runtime_env(gpu=wants["entrypoint_num_gpus"] > 0)
        env = {**env, "env_vars": self.job_env(env, wants["entrypoint_num_cpus"], job_id)}
        # The job writes its output into the run folder, so the page reads it like a local run's;
        # exec: Ray's stop signal reaches Python itself, which turns it into a Stop. A job stopped
        # while it waited for a worker never starts (Ray cannot stop a job whose supervisor waits).
        command = shlex.join(train_command(run, args, self.python(env)))
        entrypoint = (f"[ -e {shlex.quote(str(run.dir / 'STOP'))} ] && exit 0; "
                      f"exec {command} >> {shlex.quote(str(run.log_path))} 2>&1")
        core.write_json(run.dir / ENGINE_FILE, {"engine": "ray", "address": self.address, "job_id": job_id,
                                                "submitted": time.time(), **wants})
        gpus = f" and {wants['entrypoint_num_gpus']:g} GPU" if wants["entrypoint_num_gpus"] else ""
        run.set_status("queued", stage=f"waiting for a Ray worker with {wants['entrypoint_num_cpus']:g} CPU{gpus}")
        try:
            self.client().submit_job(entrypoint=entrypoint, submission_id=job_id, runtime_env=env,
                                     metadata={"app": "neural-playground", "task": run.task, "run": run.id}, **wants)
        except Exception as exc:
            why = str(exc) if isinstance(exc, EngineUnavailable) else \
                f"Ray refused the job ({type(exc).__name__}: {str(exc).strip()[:300]})"
            run.set_status("failed", error=why, ended=time.time())
            raise EngineUnavailable(why) from None

    def reconcile(self, run, status):
        """An active run as Ray sees it. A job Ray reports ended while the folder still says
        running died without writing its end (killed, out of memory, node lost, requirements
        not installable): it becomes failed, with Ray's reason and the last log lines, or
        stopped when a Stop was asked for."""
        job_id = record(run).get("job_id")
        if os.environ.get(JOB_ID_VAR) == job_id:
            return status  # asked by the job itself: its own folder is the truth, and no round trip
        try:
            state, message = self.job_info(job_id)
        except EngineUnavailable as exc:
            return {**status, "note": str(exc)}  # keep what the folder says; the page shows why it cannot check
        if state == "PENDING" and run.stop_requested() and status.get("state") == "queued":
            run.set_status("stopped", ended=time.time(), error=f"stopped before a Ray worker took it (job {job_id}); "
                           "the active model was not touched")
            return core.read_json(run.dir / "status.json", {}) or status
        if state in ("PENDING", "RUNNING"):
            # Ray vouches for it: a job waiting for a worker or installing its requirements holds
            # no lock yet, and must not look stuck (runs.looks_stuck) meanwhile.
            return {**status, "updated": time.time()}
        fresh = core.read_json(run.dir / "status.json", {}) or {}
        if fresh.get("state") not in runs.ACTIVE_STATES:
            return fresh  # the job wrote its own end just now
        if state == "MISSING":
            run.set_status("failed", ended=time.time(),
                           error=f"the Ray cluster at {self.address} does not know job {job_id} (was its head "
                                 "restarted?); the job's end was never recorded")
        elif state == "STOPPED" or run.stop_requested():
            stage = fresh.get("stage", "")
            run.set_status("stopped", ended=time.time(),
                           error=f"stopped through Ray (job {job_id}){' while ' + stage if stage else ''}; "
                                 "the active model was not touched")
        else:
            tail = log_tail(run, 8)
            run.set_status("failed", ended=time.time(),
                           error=f"the Ray job {job_id} {state.lower()} on its worker without recording a result"
                                 f"{': ' + message.strip() if message else ''}"
                                 + (f"\nlast log lines:\n{tail}" if tail else ""))
        return core.read_json(run.dir / "status.json", {}) or fresh

    def stop(self, run):
        if run.status().get("stage") == "promoting":
            return  # the job honours the STOP file once the promotion's rename is done; never cut it
        self._stop_job(run)

    def kill(self, run):
        self._stop_job(run)  # Ray's own escalation: its stop signal, then SIGKILL after a few seconds

    def _stop_job(self, run):
        job_id = record(run).get("job_id")
        try:
            self.client().stop_job(job_id)
        except EngineUnavailable:
            raise
        except Exception as exc:
            raise EngineUnavailable(f"Ray could not stop job {job_id} ({type(exc).__name__}: {exc}).") from None
        self._seen.pop((self.address, job_id), None)

    def where(self, run):
        return f"Ray {self.address}, job {record(run).get('job_id')}"

    def engine_log_tail(self, run, n):
        try:
            text = self.client().get_job_logs(record(run).get("job_id"))
        except Exception:
            return ""
        return "\n".join(text.splitlines()[-n:])


def requirements(gpu: bool = False) -> list[str]:
    """requirements.txt as a pip list for the workers; with a GPU, TensorFlow's CUDA build."""
    lines = []
    for line in (core.ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line and gpu and line.startswith("tensorflow-cpu=="):
            line = "tensorflow[and-cuda]==" + line.split("==", 1)[1]
        if line:
            lines.append(line)
    return lines


# ---------------------------------------------------------------- command line


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m pipelines.engines",
                                     description="Training jobs on this server or on a Ray cluster.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("submit", help="start `python -m pipelines.TASK train ...` on an engine; "
                                      "other flags go to train (e.g. --epochs 3 --promote if-better)")
    s.add_argument("task", choices=runs.TASKS)
    s.add_argument("--engine", choices=ENGINES, help="default: ray when RAY_ADDRESS is set, else local")
    s.add_argument("--address", help="Ray dashboard address (default: $RAY_ADDRESS)")
    s.add_argument("--wait", action="store_true", help="follow the run until it ends")
    st = sub.add_parser("status", help="the latest run of each task (or of TASK) and where it runs")
    st.add_argument("task", nargs="?", choices=runs.TASKS)
    for name, text in (("stop", "stop a run (Ray: asks Ray to stop the job)"), ("logs", "a run's last log lines")):
        p = sub.add_parser(name, help=text)
        p.add_argument("run", help="run id (see `status`) or run folder")
    args, train_args = parser.parse_known_args(argv)
    if train_args and args.cmd != "submit":
        parser.error(f"unrecognized arguments: {' '.join(train_args)}")
    try:
        command(args, train_args)
    except (EngineUnavailable, core.JobRunning, core.NotWritable) as exc:
        raise SystemExit(f"error: {exc}") from None


def command(args, train_args: list[str]) -> None:
    if args.cmd == "submit":
        run = runs.launch(args.task, train_args, engine=choose(args.engine, args.address))
        print(f"run {run.id} started: {where(run)['label']}; folder {run.dir}", flush=True)
        if args.wait:
            follow(run)
        return
    if args.cmd == "status":
        for task in [args.task] if args.task else runs.TASKS:
            run = runs.active_run(task) or next(iter(runs.list_runs(task)), None)
            if run:
                status = run.status()
                print(f"{task:<7} {run.id}  {status['state']:<9} {status.get('stage', ''):<24} {where(run)['label']}")
        return
    run = find_run(args.run)
    if args.cmd == "stop":
        run.request_stop()
        print(f"asked run {run.id} to stop ({where(run)['label']})")
    else:
        print(log_tail(run, 40))


def follow(run: runs.Run, every_s: float = 2.0) -> None:
    last = None
    while (status := run.status())["state"] in runs.ACTIVE_STATES:
        fraction, left = runs.progress(run)
        line = f"{status['state']} {status.get('stage', '')} {fraction:.0%}" + (f", ~{left / 60:.1f} min left"
                                                                               if left else "")
        if line != last:
            print(line, flush=True)
            last = line
        time.sleep(every_s)
    print(f"{status['state']}" + (f": {status['error']}" if status.get("error") else ""))


def find_run(ref: str) -> runs.Run:
    if Path(ref).is_dir():
        return runs.Run(Path(ref))
    for run in runs.list_runs():
        if run.id == ref:
            return run
    raise SystemExit(f"error: no run {ref!r}: see `python -m pipelines.engines status`")


if __name__ == "__main__":
    from pipelines import engines  # the module's own classes, not __main__'s copies (isinstance in runs.launch)

    engines.main()
