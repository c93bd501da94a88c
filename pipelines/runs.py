"""The run store: one folder per training run, shared by every pipeline.

    runs/<task>/<run id>/
        settings.json   the settings dataclass, as used
        status.json     queued | running | finished | failed | stopped (+ error, pid, times)
        metrics.jsonl   one JSON row per logged batch and per epoch (MetricsLogger)
        log.txt         stdout and stderr of the job
        best.keras      best checkpoint on the validation metric
        model.keras     the final model (the best checkpoint), card.json its card

The state lives on disk only, so a reloaded page, a second tab or a restarted app
sees the same jobs. The Training page starts jobs with `launch`; a terminal run
(`python -m pipelines.digits train`) writes the same folder.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from pipelines import core

TASKS = ("digits", "text", "mood")
ACTIVE_STATES = ("queued", "running")


class Run:
    """A handle on one run folder; every read goes to disk."""

    def __init__(self, path: Path):
        self.dir = Path(path)
        self.task = self.dir.parent.name
        self.id = self.dir.name

    @classmethod
    def create(cls, task: str, settings) -> Run:
        run_id = time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)
        run = cls(core.runs_dir() / task / run_id)
        run.dir.mkdir(parents=True)
        core.write_json(run.dir / "settings.json", asdict(settings) if not isinstance(settings, dict) else settings)
        run.set_status("queued")
        return run

    def __repr__(self) -> str:
        return f"Run({self.task}/{self.id})"

    # -- files
    @property
    def log_path(self) -> Path:
        return self.dir / "log.txt"

    def settings(self) -> dict:
        return core.read_json(self.dir / "settings.json", {}) or {}

    def card(self) -> dict | None:
        return core.read_json(self.dir / "card.json")

    # -- status
    def status(self) -> dict:
        status = core.read_json(self.dir / "status.json", {"state": "failed", "error": "status.json unreadable"})
        # A job killed with SIGKILL cannot write its own epitaph: notice the dead pid. The
        # launcher records the pid in its own file, so it never races the job's status writes.
        pid = status.get("pid") or _read_pid(self.dir / "pid")
        if status.get("state") in ACTIVE_STATES and pid and not _alive(pid):
            status = {**status, "state": "failed", "error": "the training process died unexpectedly"}
        return status

    def set_status(self, state: str, **extra) -> None:
        status = core.read_json(self.dir / "status.json", {}) or {}
        status.update(extra, state=state, updated=time.time())
        status.setdefault("created", time.time())
        core.write_json(self.dir / "status.json", status)

    @property
    def state(self) -> str:
        return self.status()["state"]

    # -- metrics
    def append_metric(self, row: dict) -> None:
        with open(self.dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(row, default=core._json_default) + "\n")

    def metrics(self) -> list[dict]:
        rows = []
        try:
            lines = (self.dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
        except OSError:
            return rows
        for line in lines:
            try:
                rows.append(json.loads(line))
            except ValueError:  # a row being written right now
                pass
        return rows

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    # -- stopping
    def request_stop(self) -> None:
        (self.dir / "STOP").touch()

    def stop_requested(self) -> bool:
        return (self.dir / "STOP").exists()


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (finished child not yet reaped by the app) counts as dead.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def list_runs(task: str | None = None) -> list[Run]:
    """All runs, newest first."""
    tasks = [task] if task else TASKS
    found = [Run(p) for t in tasks for p in (core.runs_dir() / t).glob("*") if (p / "status.json").exists()]
    return sorted(found, key=lambda r: r.id, reverse=True)


def active_run(task: str) -> Run | None:
    return next((r for r in list_runs(task) if r.state in ACTIVE_STATES), None)


def launch(task: str, args: list[str]) -> Run:
    """Start `python -m pipelines.<task> train ...` in the background; one job per task.

    The run folder is created here, so the page can show it before the job starts.
    """
    if (running := active_run(task)) is not None:
        raise RuntimeError(f"A {task} training job is already running ({running.id}).")
    run = Run.create(task, {"task": task, "args": args})
    log = open(run.log_path, "ab")
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", f"pipelines.{task}", "train", "--run-dir", str(run.dir), *args],
        cwd=core.ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,  # survives a Streamlit rerun and does not get its signals
    )
    log.close()
    core.atomic_write_text(run.dir / "pid", str(proc.pid))
    return run


def kill(run: Run) -> None:
    """Hard stop (SIGKILL): the run ends as failed and nothing is promoted."""
    pid = run.status().get("pid") or _read_pid(run.dir / "pid")
    if pid:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@contextmanager
def running(run: Run):
    """Mark a run running for the duration of the block; record how it ended."""
    run.set_status("running", pid=os.getpid(), started=time.time())
    try:
        yield run
    except KeyboardInterrupt:
        run.set_status("stopped", error="interrupted", ended=time.time())
        raise
    except BaseException as exc:
        run.set_status("failed", error=f"{type(exc).__name__}: {exc}", ended=time.time())
        raise
    else:
        if run.state == "running":  # the block did not set its own end state
            run.set_status("finished", ended=time.time())


def open_run(task: str, run_dir: str | None, settings) -> Run:
    """The run folder given by the page (--run-dir) or a new one for a terminal run."""
    if run_dir:
        run = Run(Path(run_dir))
        core.write_json(run.dir / "settings.json", asdict(settings))
        return run
    run = Run.create(task, settings)
    print(f"run folder: {run.dir}", flush=True)
    return run


# ---------------------------------------------------------------- what the Training page asks for

# (min, max) of each setting the page offers; checked before a job starts.
LIMITS = {"epochs": (1, 200), "batch_size": (8, 1024), "learning_rate": (1e-5, 1.0), "data_fraction": (0.01, 1.0)}
CAN_AUGMENT = {"digits", "mood"}


def validate(task: str, form: dict) -> list[str]:
    """Every problem with the chosen settings, in words (empty when all is well)."""
    errors = [] if task in TASKS else [f"unknown task {task!r}"]
    for key, (low, high) in LIMITS.items():
        value = form.get(key)
        if value is None:
            continue
        if not isinstance(value, (int, float)) or not low <= value <= high:
            errors.append(f"{key.replace('_', ' ')} must be between {low:g} and {high:g} (got {value!r})")
    if form.get("arch", "default") not in ("default", "baseline"):
        errors.append("architecture must be default or baseline")
    if form.get("data_dir") and not Path(form["data_dir"]).is_dir():
        errors.append(f"data folder {form['data_dir']} not found")
    if form.get("corpus") and not Path(form["corpus"]).is_file():
        errors.append(f"corpus file {form['corpus']} not found")
    return errors


def train_args(task: str, form: dict) -> list[str]:
    """The `python -m pipelines.<task> train` flags for the page's choices."""
    args = ["--arch", form.get("arch", "default")]
    for key in LIMITS:
        if form.get(key) is not None:
            args += [f"--{key.replace('_', '-')}", str(form[key])]
    if task in CAN_AUGMENT and form.get("augment") is False:
        args.append("--no-augment")
    if task == "digits" and form.get("with_feedback"):
        args.append("--with-feedback")
    if task == "text" and form.get("corpus"):
        args += ["--corpus", str(form["corpus"])]
    if form.get("data_dir"):
        args += ["--data-dir", str(form["data_dir"])]
    args += ["--promote", "if-better" if form.get("auto_promote") else "never"]
    return args


def progress(run: Run) -> tuple[float, float | None]:
    """(fraction done, seconds left or None) from the status and the latest metrics row."""
    status, rows = run.status(), run.metrics()
    epochs, steps = status.get("epochs"), status.get("steps")
    if not rows or not epochs or not steps:
        return 0.0, None
    last = rows[-1]
    done_steps = (last["epoch"] + 1) * steps if last["kind"] == "epoch" else last["epoch"] * steps + last["step"]
    fraction = min(done_steps / (epochs * steps), 1.0)
    left = last["time"] * (1 - fraction) / fraction if fraction > 0 else None
    return fraction, left


def summary(run: Run) -> dict:
    """One row of the run history table."""
    status, card = run.status(), run.card() or {}
    epochs = [r for r in run.metrics() if r["kind"] == "epoch"]
    val = [r["val_accuracy"] for r in epochs if "val_accuracy" in r]
    started, ended = status.get("started"), status.get("ended") or status.get("updated")
    score = card.get("score", {})
    return {
        "run": run.id, "task": run.task, "status": status["state"],
        "settings": ", ".join(f"{k}={v}" for k, v in run.settings().items() if k not in ("seed", "task", "args")),
        "minutes": round((ended - started) / 60, 1) if started and ended else None,
        "epochs": len(epochs), "best val accuracy": max(val) if val else None,
        "test": f"{score['name']} {score['value']:.4g}" if score else None,
        "promoted": bool(status.get("promoted")), "error": status.get("error", ""),
    }


# ---------------------------------------------------------------- the same runs from a terminal

SETTING_FLAGS = (("epochs", int), ("batch-size", int), ("learning-rate", float), ("data-fraction", float), ("seed", int))


def add_train_flags(parser, augment: bool = True) -> None:
    """The `train` flags every pipeline shares (they mirror the Training page's form)."""
    parser.add_argument("--arch", choices=("default", "baseline"), default="default")
    for name, typ in SETTING_FLAGS:
        parser.add_argument(f"--{name}", type=typ)
    if augment:
        parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--init-from", help="a .keras model to fine-tune instead of starting from random weights")
    parser.add_argument("--promote", choices=("never", "always", "if-better"), default="never",
                        help="make the trained model the active one (if-better: only if it beats it)")
    parser.add_argument("--run-dir", help="run folder made by the Training page")


def settings_from_args(settings_cls, args):
    """The pipeline's settings: its default (or baseline), overridden by the flags given."""
    settings = settings_cls.baseline() if args.arch == "baseline" else settings_cls()
    for name, _ in SETTING_FLAGS + (("units", int), ("dropout", float), ("init-from", str)):
        key = name.replace("-", "_")
        if getattr(args, key, None) is not None:
            setattr(settings, key, getattr(args, key))
    if getattr(args, "no_augment", False):
        settings.augment = False
    return settings


def train_from_args(task: str, settings, args, train_fn, **kwargs):
    """Run `train_fn(settings, run, promote=..., **kwargs)` in a run folder; (run, card)."""
    run = open_run(task, args.run_dir, settings)
    with running(run):
        return run, train_fn(settings, run, promote=args.promote, **kwargs)
