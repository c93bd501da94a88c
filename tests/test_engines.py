"""The engine choice and the Ray engine's job description; none of these needs a Ray cluster
(tests/test_ray.py runs real jobs on a real local head)."""

import json
import sys

import pytest

from pipelines import core, engines, runs


def test_the_local_engine_is_the_default_and_ray_address_chooses_ray(monkeypatch):
    assert engines.choose().name == "local" and engines.default_name() == "local"
    pytest.importorskip("ray.job_submission", reason="Ray is not installed: pip install -r requirements-ray.txt")
    monkeypatch.setenv("RAY_ADDRESS", "http://head:8265")
    engine = engines.choose()
    assert engine.name == "ray" and engine.address == "http://head:8265" and engines.default_name() == "ray"
    assert engines.choose("local").name == "local"  # the page or the command line can still pick local
    assert engines.available() == {"local": "", "ray": ""}


def test_without_ray_choosing_it_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an install without requirements-ray.txt sees
    monkeypatch.setitem(sys.modules, "ray.job_submission", None)
    monkeypatch.setenv("RAY_ADDRESS", "http://head:8265")
    with pytest.raises(engines.EngineUnavailable, match=r"pip install -r requirements-ray.txt"):
        engines.choose()
    with pytest.raises(engines.EngineUnavailable, match=r"needs Ray"):
        runs.launch("digits", ["--epochs", "1"])
    assert runs.list_runs("digits") == []  # refused before any run folder was made
    assert engines.available()["local"] == "" and "requirements-ray.txt" in engines.available()["ray"]
    assert engines.choose("local").name == "local"


def test_ray_needs_an_address_and_a_known_engine_name(monkeypatch):
    pytest.importorskip("ray.job_submission", reason="Ray is not installed: pip install -r requirements-ray.txt")
    with pytest.raises(engines.EngineUnavailable, match=r"set RAY_ADDRESS to the head's dashboard address"):
        engines.choose("ray")
    with pytest.raises(engines.EngineUnavailable, match=r"unknown engine 'spark': use local or ray"):
        engines.choose("spark")


def test_an_unreachable_cluster_fails_the_run_in_words(monkeypatch, tmp_path):
    pytest.importorskip("ray.job_submission", reason="Ray is not installed: pip install -r requirements-ray.txt")
    with pytest.raises(engines.EngineUnavailable, match=r"Cannot reach the Ray cluster at http://127.0.0.1:9"):
        runs.launch("digits", ["--epochs", "1"], engine=engines.RayEngine("http://127.0.0.1:9"))
    [run] = runs.list_runs("digits")
    assert run.state == "failed" and "Cannot reach the Ray cluster" in run.status()["error"]
    assert engines.where(run)["label"].startswith("Ray http://127.0.0.1:9, job digits-")


def test_the_default_runtime_env_ships_the_project_and_installs_its_requirements():
    engine = engines.RayEngine("http://head:8265")
    env = engine.runtime_env(gpu=False)
    assert env["working_dir"] == str(core.ROOT)
    assert {"runs", "models", ".venv", ".git"} <= set(env["excludes"])  # shared storage, never copies
    pins = [line.split("#")[0].strip() for line in (core.ROOT / "requirements.txt").read_text().splitlines()]
    assert env["pip"] == [p for p in pins if p]
    gpu = engine.runtime_env(gpu=True)["pip"]
    assert not any(p.startswith("tensorflow-cpu") for p in gpu) and any(p.startswith("tensorflow[and-cuda]==")
                                                                        for p in gpu)
    assert engine.python(env) == "python"  # the runtime env's own interpreter


def test_the_job_sees_the_servers_folders_and_a_custom_runtime_env(monkeypatch, tmp_path):
    engine = engines.RayEngine("http://head:8265")
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("RAY_RUNTIME_ENV", json.dumps({"env_vars": {"JOB_NICE": "0"}}))
    custom = engine.runtime_env(gpu=False)
    env = engine.job_env(custom, cpus=4)
    assert env["RUNS_DIR"] == str(core.runs_dir().resolve()) and env["MODELS_DIR"] == str(core.models_dir().resolve())
    assert env["DATA_DIR"] == str(tmp_path.resolve()) and env["JOB_THREADS"] == "4" and env["JOB_NICE"] == "0"
    assert env["PYTHONPATH"] == str(core.ROOT)  # no working_dir: the workers share this install
    assert env["TF_CPP_MIN_LOG_LEVEL"] == runs.QUIET_TF["TF_CPP_MIN_LOG_LEVEL"] != "0"  # no start-up notes in the log
    assert engine.python(custom) == sys.executable
    monkeypatch.setenv("RAY_RUNTIME_ENV", "{pip: x}")
    with pytest.raises(engines.EngineUnavailable, match="RAY_RUNTIME_ENV is not valid JSON"):
        engine.runtime_env(gpu=False)


def test_resources_follow_the_settings(monkeypatch):
    engine = engines.RayEngine("http://head:8265")
    monkeypatch.setattr(engine, "nodes", lambda: [{"CPU": 1.0}, {"CPU": 8.0, "GPU": 1.0}])  # what the head reports
    assert engine.resources("mood") == {"entrypoint_num_cpus": 2.0, "entrypoint_num_gpus": 1.0}
    monkeypatch.setattr(engine, "nodes", lambda: [{"CPU": 1.0}])
    assert engine.resources("digits") == {"entrypoint_num_cpus": 1.0, "entrypoint_num_gpus": 0.0}
    monkeypatch.setattr(engine, "nodes", lambda: [{"CPU": 0.0}])  # only a head that trains nothing: wait for workers
    assert engine.resources("digits")["entrypoint_num_cpus"] == 2.0
    monkeypatch.setenv("RAY_JOB_CPUS", "6")
    monkeypatch.setenv("RAY_JOB_GPUS", "0")
    assert engine.resources("text") == {"entrypoint_num_cpus": 6.0, "entrypoint_num_gpus": 0.0}
