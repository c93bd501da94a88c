"""The run store: one folder per training run, shared by every pipeline.

    runs/<task>/<run id>/
        settings.json   the settings dataclass, as used
        status.json     queued | running | finished | failed | stopped (+ error, pid, times)
        metrics.jsonl   one JSON row per logged batch and per epoch (MetricsLogger)
        log.txt         stdout and stderr of the job
        best.keras      best checkpoint on the validation metric
        model.keras     the final model (the best checkpoint), card.json its card
        mistakes.json   the model's most confident test mistakes (+ mistakes.png), written at evaluation
        meta.json       the name and note a person gave the run (pipelines/tracker.py)
        tensorboard/    Keras' TensorBoard event files, when tensorboard is installed

The state lives on disk only, so a reloaded page, a second tab or a restarted app
sees the same jobs. The Training page starts jobs with `launch`; a terminal run
(`python -m pipelines.digits train`) writes the same folder.

One job per task: `train_from_args` holds runs/<task>/.job.lock (filelock; the OS frees
it when the process dies) for the whole job, so page and terminal obey the same lock.
The status records the job's pid and the process start time (a reused pid is no job
of ours) and the stage (loading data, training epoch k/n, evaluating, promoting);
Stop is honoured in every stage. Jobs run niced (JOB_NICE) on JOB_THREADS threads.

`python -m pipelines.runs list|show|compare|delete [--json]` reads the same store (pipelines/tracker.py).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import asdict, fields, replace
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
        now = time.time()  # milliseconds in the id: runs made within one second still sort by age
        run_id = time.strftime("%Y%m%d-%H%M%S-", time.localtime(now)) + f"{int(now * 1000) % 1000:03d}{secrets.token_hex(1)}"
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
        if status.get("state") in ACTIVE_STATES and (self.dir / "engine.json").exists():
            engine = _engine(self)  # a job on another engine (Ray): its pid means nothing here
            if engine.name != "local":
                return engine.reconcile(self, status)
        # A job killed with SIGKILL cannot write its own epitaph: notice the dead pid. The
        # launcher records the pid in its own file, so it never races the job's status writes.
        pid, start = status.get("pid"), status.get("pid_start")
        if not pid:
            pid, start = _read_pid(self.dir / "pid")
        if status.get("state") in ACTIVE_STATES and pid and not _alive(pid, start):
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

    def set_stage(self, stage: str) -> None:
        """What the job does now, in words: loading data, training epoch 2/5, evaluating, promoting."""
        self.set_status(self.status().get("state", "running"), stage=stage)

    # -- metrics
    def append_metric(self, row: dict) -> None:
        with open(self.dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(row, default=core._json_default) + "\n")

    def metrics(self) -> list[dict]:
        """The rows logged so far. The file only grows (rows are appended whole), so only what was added since
        the last read is parsed: every polling section of the Training page reads it, and a 40-epoch run's
        1.4 MB took 8 ms to parse whole, each time."""
        path = self.dir / "metrics.jsonl"
        try:
            stat = path.stat()
        except OSError:
            return []
        inode, done, rows = _METRICS.get(str(path)) or (None, 0, ())
        if inode != stat.st_ino or stat.st_size < done:  # replaced or cut: read it again
            done, rows = 0, ()
        if stat.st_size > done:
            with suppress(OSError), open(path, "rb") as f:
                f.seek(done)
                chunk = f.read()
                whole = chunk[:chunk.rfind(b"\n") + 1]  # a row being written right now is read next time
                rows += tuple(_parse_rows(whole))
                done += len(whole)
                _METRICS.put(str(path), (stat.st_ino, done, rows))
        return list(rows)

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    # -- stopping
    def request_stop(self) -> None:
        try:
            _engine(self).stop(self)  # Ray: ask Ray to stop the job; a local job polls the STOP file
        except ConnectionError:
            pass  # the cluster cannot be asked: the STOP file still reaches the job through the shared folder
        finally:
            (self.dir / "STOP").touch()

    def stop_requested(self) -> bool:
        return (self.dir / "STOP").exists()


def _read_pid(path: Path) -> tuple[int | None, int | None]:
    """(pid, process start time) as launch() wrote them."""
    try:
        parts = path.read_text().split()
        return int(parts[0]), (int(parts[1]) if len(parts) > 1 else None)
    except (OSError, ValueError, IndexError):
        return None, None


def _proc_stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # after "(command name)", which may hold spaces


def process_start(pid: int) -> int | None:
    """When a process started (clock ticks since boot): a reused pid has another start time."""
    fields = _proc_stat(pid)
    return int(fields[19]) if fields else None


def _alive(pid: int, start: int | None = None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _proc_stat(pid)
    if fields is None:
        return True
    # A zombie (finished child not yet reaped by the app) counts as dead, and so does
    # another process that got the same pid later.
    return fields[0] != "Z" and (start is None or int(fields[19]) == start)


_METRICS = core.Memo(64)  # metrics.jsonl path -> (inode, bytes read, rows): see Run.metrics


def _parse_rows(data: bytes):
    for line in data.decode("utf-8", errors="replace").splitlines():
        with suppress(ValueError):  # a damaged row: skipped, as before
            yield json.loads(line)


def list_runs(task: str | None = None) -> list[Run]:
    """All runs, newest first."""
    tasks = [task] if task else TASKS
    found = [Run(p) for t in tasks for p in (core.runs_dir() / t).glob("*") if (p / "status.json").exists()]
    return sorted(found, key=lambda r: r.id, reverse=True)


def active_run(task: str) -> Run | None:
    return next((r for r in list_runs(task) if r.state in ACTIVE_STATES), None)


# ---------------------------------------------------------------- one job per task


def _lock_path(task: str) -> Path:
    return core.runs_dir() / task / ".job.lock"


def job_holder(task: str, wait_s: float = 0) -> dict | None:
    """Who holds the task's job lock ({run, pid, started}), or None when no job runs (or it is
    released within `wait_s`)."""
    from filelock import FileLock, Timeout

    if not _lock_path(task).exists():
        return None
    lock = FileLock(_lock_path(task), timeout=wait_s)
    try:
        lock.acquire()
    except Timeout:
        return core.read_json(_lock_path(task).with_name(".job.json"), {}) or {"run": "unknown"}
    except OSError:
        return None
    lock.release()
    return None


def describe_job(task: str, holder: dict) -> str:
    started = time.strftime("%H:%M", time.localtime(holder["started"])) if holder.get("started") else "earlier"
    return (f"A {task} training job is already running: run {holder.get('run', 'unknown')} "
            f"(pid {holder.get('pid', '?')}, started {started}). Wait for it to end or stop it on the Training page.")


@contextmanager
def job_lock(task: str):
    """Hold the task's lock for the whole job: the page and the command line obey the same one.
    The OS releases it when the process dies, so a crash never leaves a stale lock."""
    from filelock import FileLock, Timeout

    core.check_writable(core.runs_dir() / task, "runs")
    lock = FileLock(_lock_path(task), timeout=3)  # a page probing the lock (job_holder) holds it for an instant
    try:
        lock.acquire()
    except Timeout:
        raise core.JobRunning(describe_job(task, job_holder(task) or {})) from None
    try:
        yield
    finally:
        lock.release()


def record_holder(task: str, run: Run) -> None:
    """Name the job that holds the lock, for the message a second job gets."""
    core.write_json(_lock_path(task).with_name(".job.json"),
                    {"run": run.id, "pid": os.getpid(), "pid_start": process_start(os.getpid()), "started": time.time()})


def _engine(run: Run):
    """The engine a run was submitted to (pipelines.engines: local or Ray)."""
    from pipelines import engines

    return engines.of(run)


def launch(task: str, args: list[str], engine=None) -> Run:
    """Start `python -m pipelines.<task> train ...` in the background; one job per task.

    `engine`: "local", "ray" or an engines.Engine (default: Ray when RAY_ADDRESS is set).
    The run folder is created here, so the page can show it before the job starts.
    """
    from pipelines import engines

    engine = engine if isinstance(engine, engines.Engine) else engines.choose(engine)
    holder = job_holder(task)
    if holder is not None and Run(core.runs_dir() / task / str(holder.get("run"))).state not in ACTIVE_STATES:
        holder = job_holder(task, wait_s=10)  # it has written its end state and is letting go of the lock
    if holder is not None:
        raise core.JobRunning(describe_job(task, holder))
    if (running := active_run(task)) is not None:
        raise core.JobRunning(describe_job(task, {"run": running.id, **running.status()}))
    core.check_writable(core.runs_dir() / task, "runs")
    run = Run.create(task, {"task": task, "args": args})
    engine.submit(run, args)
    return run


# TensorFlow's C++ start-up notes (oneDNN, CPU features) filled the page's log box where the progress goes;
# its warnings and errors stay.
QUIET_TF = {"TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "1")}


def start_local(run: Run, args: list[str]) -> None:
    """The local engine: a detached subprocess of the server."""
    log = open(run.log_path, "ab")
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", f"pipelines.{run.task}", "train", "--run-dir", str(run.dir), *args],
        cwd=core.ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,  # survives a Streamlit rerun and does not get its signals
        env={**os.environ, **QUIET_TF},
    )
    log.close()
    core.atomic_write_text(run.dir / "pid", f"{proc.pid} {process_start(proc.pid) or ''}")


def kill(run: Run) -> None:
    """Hard stop, nothing promoted: a local job is killed (SIGKILL) and ends as failed; a Ray job
    is stopped by Ray (its stop signal, SIGKILL a few seconds later)."""
    _engine(run).kill(run)


def kill_local(run: Run) -> None:
    """SIGKILL a local job. Only the process that started this run is killed, never another
    one that got its pid later."""
    status = run.status()
    pid, start = status.get("pid"), status.get("pid_start")
    if not pid:
        pid, start = _read_pid(run.dir / "pid")
    if pid and _alive(pid, start):
        with suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def looks_stuck(run: Run, grace_s: float = 60) -> bool:
    """Active on disk, but nothing holds the task's job lock for a while: offer `abandon`."""
    status = run.status()
    return (status["state"] in ACTIVE_STATES and time.time() - status.get("updated", status.get("created", 0)) > grace_s
            and job_holder(run.task) is None)


def abandon(run: Run) -> None:
    """The way out of a run stuck as running: kill it if it is really ours, mark it failed."""
    kill(run)
    run.set_status("failed", error="marked as failed by the user (the job was not running any more)",
                   ended=time.time())


@contextmanager
def running(run: Run):
    """Mark a run running for the duration of the block; record how it ended."""
    run.set_status("running", pid=os.getpid(), pid_start=process_start(os.getpid()), started=time.time())
    try:
        yield run
    except KeyboardInterrupt:
        stage = run.status().get("stage", "")
        run.set_status("stopped", error=f"stopped by the user{' while ' + stage if stage else ''}; "
                       "the active model was not touched", ended=time.time())
        raise
    except BaseException as exc:
        run.set_status("failed", error=error_text(exc), ended=time.time())
        raise
    else:
        if run.state == "running":  # the block did not set its own end state
            run.set_status("finished", ended=time.time())


PERSON_ERRORS = (core.DataUnavailable, core.ModelUnavailable, core.InvalidSettings, core.NotWritable,
                 core.PromotionError, core.JobRunning)


def error_text(exc: BaseException) -> str:
    """One sentence for the page: the message alone when it is written for people, else its type too."""
    text = str(exc).strip() or type(exc).__name__
    return text if isinstance(exc, PERSON_ERRORS) else f"{type(exc).__name__}: {text}"


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

# Bounds of the page's number inputs; the rules themselves live in each pipeline's Settings.
LIMITS = {"epochs": (1, 1000), "batch_size": (2, 4096), "learning_rate": (1e-6, 1.0), "data_fraction": (0.01, 1.0)}
CAN_AUGMENT = {"digits", "mood"}
FORM_KEYS = ("arch", "epochs", "batch_size", "learning_rate", "data_fraction", "augment", "with_feedback", "init_from")
# Learning rates offered by the page: a log scale (1, 2, 3, 5 per decade), plus the pipeline's default.
LR_CHOICES = tuple(sorted({round(m * 10.0 ** e, 12) for e in range(-6, -1) for m in (1, 2, 3, 5)} | {0.1}))
FINE_TUNE_LR_FACTOR = 10  # fine-tuning starts near a minimum: a step 10x smaller keeps what the model knows
MIN_CORPUS_CHARS = 2_000


def settings_class(task: str):
    """The task's settings dataclass (pipelines.<task>.Settings)."""
    if task not in TASKS:
        raise core.InvalidSettings(f"unknown task {task!r}: use {', '.join(TASKS)}")
    return importlib.import_module(f"pipelines.{task}").Settings


def archs(task: str) -> tuple:
    """The architectures a task's pipeline can train (its ARCHS, else the common ones)."""
    return getattr(importlib.import_module(f"pipelines.{task}"), "ARCHS", core.ARCHS)


def base_settings(cls, arch: str = "default"):
    """A pipeline's own defaults for an architecture (the baseline has settings of its own): what the page's
    form, its validation and the command line all start from."""
    return cls.baseline() if arch == "baseline" else replace(cls(), arch=arch)


def defaults(task: str, arch: str = "default") -> dict:
    """What the page's form starts from: the pipeline's own defaults for that architecture."""
    return asdict(base_settings(settings_class(task), arch))


def lr_choices(default: float) -> list[float]:
    """The page's learning-rate steps, with the pipeline's default among them."""
    return sorted(set(LR_CHOICES) | {default})


def suggested_lr(default: float, fine_tune: bool) -> float:
    """The default, or for fine-tuning the step nearest to default / FINE_TUNE_LR_FACTOR (log scale)."""
    if not fine_tune:
        return default
    import math

    target = math.log(default / FINE_TUNE_LR_FACTOR)
    return min(LR_CHOICES, key=lambda v: abs(math.log(v) - target))


def init_choices(task: str, name: str | None = None) -> dict[str, str]:
    """What a run can start from: label -> model file ('' = random weights); the active model first."""
    out = {"random weights (from scratch)": ""}
    versions = core.list_versions(name or task)
    for v in sorted(versions, key=lambda v: not v["active"]):
        score = (v["card"].get("score") or {})
        what = f"{score.get('name', '')} {score['value']:.4g}" if "value" in score else "no score"
        arch = (v["card"].get("settings") or {}).get("arch", "?")
        out[f"{'active model ' if v['active'] else ''}{v['version']} ({arch}, {what})"] = str(v["dir"] / core.MODEL_FILE)
    return out


def _init_problem(form: dict) -> str | None:
    """Fine-tuning copies weights: the model must exist and have the same architecture."""
    path = Path(form["init_from"])
    if not path.exists():
        return f"model {path} not found"
    card = core.read_json(path.with_name(core.CARD_FILE), {}) or {}
    arch = (card.get("settings") or {}).get("arch")
    if arch == "ensemble":
        return f"that model is an {arch} of trained models and cannot be fine-tuned: start from one of its networks"
    if arch and arch != form.get("arch", "default"):
        return f"that model is the {arch} architecture: pick {arch} above to fine-tune it"
    return None


def field_errors(task: str, form: dict) -> dict[str, str]:
    """Each form field's problem in words (empty when all is well), for the page to show next to it."""
    errors = {}
    base = {"arch": form.get("arch", "default")}
    for key in FORM_KEYS:
        if key == "init_from" or form.get(key) is None:
            continue
        try:
            settings_for(task, {**base, key: form[key]})
        except core.InvalidSettings as exc:
            errors[key] = str(exc)
    if form.get("init_from") and (problem := _init_problem(form)):
        errors["init_from"] = problem
    if form.get("data_dir") and not Path(form["data_dir"]).is_dir():
        errors["data_dir"] = f"data folder {form['data_dir']} not found"
    if form.get("corpus"):
        try:
            check_corpus(form["corpus"])
        except core.DataUnavailable as exc:
            errors["corpus"] = str(exc)
    return errors


def settings_for(task: str, form: dict):
    """The settings a run will use for the page's choices; raises InvalidSettings in one line."""
    cls = settings_class(task)
    base = base_settings(cls, form.get("arch") or "default")
    names = {f.name for f in fields(cls)}
    return replace(base, **{k: form[k] for k in FORM_KEYS if k in names and form.get(k) is not None})


def check_corpus(path) -> None:
    """Refuse a corpus that cannot teach a character model: missing, empty, binary, too short."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise core.DataUnavailable(f"Corpus file {path} cannot be read ({exc.strerror or exc}).") from None
    if not raw.strip():
        raise core.DataUnavailable(f"Corpus file {path.name} is empty: pick a plain-text file with prose in it.")
    text = core.decode_text(raw)  # Latin-1 / Windows-1252 too: it was called binary, or read with "\ufffd"s
    odd = sum(ord(c) < 32 and c not in "\n\r\t\f" for c in (text or "")[:200_000])
    if text is None or b"\x00" in raw[:65_536] or odd > 0.01 * min(len(text), 200_000):
        raise core.DataUnavailable(f"Corpus file {path.name} is not plain text (binary data); "
                                   "pick a .txt file saved as UTF-8.")
    if len(text.strip()) < MIN_CORPUS_CHARS:
        raise core.DataUnavailable(f"Corpus file {path.name} is too short to train on ({len(text.strip()):,} "
                                   f"characters; at least {MIN_CORPUS_CHARS:,} needed).")


def validate(task: str, form: dict) -> list[str]:
    """Every problem with the chosen settings, in words (empty when all is well)."""
    errors = []
    try:
        settings_for(task, form)
    except core.InvalidSettings as exc:
        errors.append(str(exc))
    if form.get("data_dir") and not Path(form["data_dir"]).is_dir():
        errors.append(f"data folder {form['data_dir']} not found")
    if form.get("corpus"):
        try:
            check_corpus(form["corpus"])
        except core.DataUnavailable as exc:
            errors.append(str(exc))
    return errors


def train_args(task: str, form: dict) -> list[str]:
    """The `python -m pipelines.<task> train` flags for the page's choices: every setting explicit,
    so the run uses exactly what the form showed."""
    s = settings_for(task, form)
    args = ["--arch", s.arch, "--epochs", str(s.epochs), "--batch-size", str(s.batch_size),
            "--learning-rate", repr(s.learning_rate), "--data-fraction", repr(s.data_fraction)]
    if task in CAN_AUGMENT:
        args.append("--augment" if s.augment else "--no-augment")
    if task == "digits" and s.with_feedback:
        args.append("--with-feedback")
    if task == "text" and form.get("corpus"):
        args += ["--corpus", str(form["corpus"])]
    if task == "text" and form.get("name"):
        args += ["--name", str(form["name"])]
    if form.get("data_dir"):
        args += ["--data-dir", str(form["data_dir"])]
    if form.get("init_from"):
        args += ["--init-from", str(form["init_from"])]
    args += ["--promote", "if-better" if form.get("auto_promote") else "never"]
    return args


def epoch_steps(row: dict, steps: int) -> int:
    """How many steps of its epoch a metrics row had done (an epoch row: all, unless a Stop cut it short)."""
    if row["kind"] == "epoch":
        return row.get("steps_done", steps) if row.get("partial") else steps
    return row["step"]


def full_epochs(rows: list[dict]) -> list[dict]:
    """The epoch rows of epochs run to their end."""
    return [r for r in rows if r.get("kind") == "epoch" and not r.get("partial")]


def progress(run: Run) -> tuple[float, float | None]:
    """(fraction done, seconds left or None) from the status and the latest metrics row."""
    status, rows = run.status(), run.metrics()
    epochs, steps = status.get("epochs"), status.get("steps")
    if not rows or not epochs or not steps:
        return 0.0, None
    last = rows[-1]
    done_steps = last["epoch"] * steps + epoch_steps(last, steps)
    fraction = min(done_steps / (epochs * steps), 1.0)
    left = last["time"] * (1 - fraction) / fraction if fraction > 0 else None
    return fraction, left


def summary(run: Run) -> dict:
    """One row of the run history table."""
    status, card = run.status(), run.card() or {}
    epochs = full_epochs(run.metrics())
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


def add_train_flags(parser, augment: bool = True, archs: tuple = core.ARCHS) -> None:
    """The `train` flags every pipeline shares (they mirror the Training page's form)."""
    parser.add_argument("--arch", choices=archs, default="default")
    for name, typ in SETTING_FLAGS:
        parser.add_argument(f"--{name}", type=typ)
    if augment:
        parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                            help="augment the training images (default: the architecture's choice)")
    parser.add_argument("--init-from", help="a .keras model to fine-tune instead of starting from random weights")
    parser.add_argument("--promote", choices=("never", "always", "if-better"), default="never",
                        help="make the trained model the active one (if-better: only if it beats it on the "
                             "same benchmark)")
    parser.add_argument("--run-dir", help="run folder made by the Training page")


def settings_from_args(settings_cls, args):
    """The pipeline's settings: its default (or baseline), overridden by the flags given.
    Built with dataclasses.replace, so the dataclass validates the result (InvalidSettings)."""
    settings = base_settings(settings_cls, args.arch)
    names = {f.name for f in fields(settings_cls)}
    overrides = {}
    for name, _ in SETTING_FLAGS + (("units", int), ("dropout", float), ("init-from", str), ("augment", bool)):
        key = name.replace("-", "_")
        if key in names and getattr(args, key, None) is not None:
            overrides[key] = getattr(args, key)
    return replace(settings, **overrides)


def nice_autogroup(nice: int, pid: str = "self") -> None:
    """Where Linux shares CPU time between sessions first (autogroup, on by default), a nice level counts only
    inside the session: a job started in its own session (`start_new_session`) got as much CPU as the whole server
    whatever its nice level. This sets the nice level of the process's session group. No-op elsewhere."""
    for _ in range(5):
        try:
            Path(f"/proc/{pid}/autogroup").write_text(str(nice))
            return
        except BlockingIOError:  # EAGAIN: without CAP_SYS_ADMIN, one such change per 100 ms on the whole machine
            time.sleep(0.1)
        except OSError:
            return


def lower_priority() -> None:
    """A training job yields to the app: nice level JOB_NICE (default 19, the lowest: at 10 the job took CPU from
    the pages when the machine was busy; it still has every idle cycle) and JOB_THREADS TensorFlow threads
    (default: all cores but one), so the server keeps a core."""
    with suppress(OSError, ValueError):
        nice = int(os.environ.get("JOB_NICE", "19"))
        os.nice(nice)
        if os.getsid(0) == os.getpid():  # a job of its own session (the page's): never a terminal's whole session
            nice_autogroup(nice)
    threads = int(os.environ.get("JOB_THREADS") or max(1, (os.cpu_count() or 2) - 1))
    import tensorflow as tf

    with suppress(RuntimeError):  # too late once TensorFlow has run an op: keep its own choice
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(threads, 2))


@contextmanager
def stop_watcher(run: Run, poll_s: float = 0.3):
    """Honour Stop in every stage. While Keras trains, MetricsLogger stops after the batch and
    keeps the best checkpoint; in any other stage (loading data, evaluating, ...) the main thread
    gets a KeyboardInterrupt, which `running` records as stopped. Promotion's final rename is
    never interrupted (stage "promoting"): it either happened or not."""
    import _thread
    import threading

    done = threading.Event()

    def stop_now() -> bool:
        try:
            return run.stop_requested() and not getattr(run, "in_fit", False) \
                and run.status().get("stage") != "promoting"
        except Exception:  # noqa: BLE001 - a Ray run's status asks its cluster, which can fail: look again next poll
            return False

    def watch():
        while not done.wait(poll_s):
            if stop_now():
                _thread.interrupt_main()
                return

    main = threading.current_thread() is threading.main_thread()
    if main:  # Ray stops a job with SIGTERM: a Stop
        previous = signal.signal(signal.SIGTERM, lambda *_: (run.dir / "STOP").touch())
        # interrupt_main() raises KeyboardInterrupt only through Python's own SIGINT handler; a
        # library that set another one (or SIG_IGN) would make the Stop silently do nothing.
        previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        if main:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, previous_int)


def train_from_args(task: str, settings, args, train_fn, **kwargs):
    """Run `train_fn(settings, run, promote=..., **kwargs)` in a run folder; (run, card).

    One job per task: the lock is taken first, so a second `train` (page or terminal)
    is refused with the name of the running job."""
    with ExitStack() as stack:
        try:
            stack.enter_context(job_lock(task))
        except (core.JobRunning, core.NotWritable) as exc:
            if args.run_dir:  # the page made this run folder: say there why it did not start
                Run(Path(args.run_dir)).set_status("failed", error=str(exc), ended=time.time())
            raise
        run = open_run(task, args.run_dir, settings)
        record_holder(task, run)
        lower_priority()
        with running(run), stop_watcher(run):
            run.set_stage("loading data")
            return run, train_fn(settings, run, promote=args.promote, **kwargs)


# ---------------------------------------------------------------- the registry from a terminal


def add_registry_commands(sub, name_flag: bool = False) -> None:
    """`models` (list the versions) and `rollback [VERSION]`, shared by every pipeline."""
    m = sub.add_parser("models", help="list the registered versions, marking the active one")
    r = sub.add_parser("rollback", help="make an earlier version active (default: the one before the active)")
    r.add_argument("version", nargs="?", help="e.g. v2 (see `models`)")
    for p in (m, r):
        if name_flag:
            p.add_argument("--name", help="registry name (text, text-sherlock, ...)")


def version_rows(task: str) -> list[dict]:
    """One row per version for the page and the command line."""
    rows = []
    for v in core.list_versions(task):
        card, score = v["card"], v["card"].get("score", {}) or {}
        rows.append({
            "version": v["version"], "active": v["active"],
            "date": card.get("promoted") or card.get("date", ""), "run": card.get("run", ""),
            "score": f"{score['name']} {score['value']:.4g}" if "value" in score else "",
            "benchmark": score.get("benchmark_name") or score.get("benchmark") or "not recorded",
        })
    return rows


def registry_command(task: str, args) -> None:
    """Run `models` or `rollback` for a task (or a name such as text-sherlock)."""
    name = getattr(args, "name", None) or task
    if args.cmd == "models":
        rows = version_rows(name)
        if not rows and core.model_path(name).exists():
            rows = [{"version": "(not yet registered)", "active": True, "date": "", "run": "",
                     "score": "", "benchmark": "the first promotion or rollback registers it as v1"}]
        if not rows:
            print(f"No {name} versions yet: train one with `python -m pipelines.{task} train --promote always`.")
        for row in rows:
            print(f"{'*' if row['active'] else ' '} {row['version']:<6} {row['date']:<25} run {row['run'] or '-':<22} "
                  f"{row['score'] or '-':<24} on {row['benchmark']}")
        return
    version = core.rollback(name, args.version)
    print(f"{name}: {version} is now the active model.")


if __name__ == "__main__":  # python -m pipelines.runs list|show|compare|delete (pipelines/tracker.py)
    from pipelines.tracker import main as _tracker_main

    core.run_cli(_tracker_main)
