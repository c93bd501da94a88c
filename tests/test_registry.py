"""The model registry: immutable versions, an atomic active pointer, rollback, failures that change nothing."""

import hashlib
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT
from test_core import BENCH, finished_run

from pipelines import core, runs, training


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def active_set(task="digits") -> dict:
    """Hashes of every file of the active version, read through the flat names the pages use."""
    names = [f"{task}.keras", f"{task}.json", f"{task}.vocab.json"]
    return {n: digest(core.models_dir() / n) for n in names if (core.models_dir() / n).exists()}


def vocab_run(score: float, vocab: dict, **kw):
    run = finished_run(score=score, **kw)
    core.write_json(run.dir / "model.vocab.json", vocab)
    return run


def test_rollback_restores_the_exact_previous_files():
    core.promote("digits", vocab_run(0.5, {"chars": ["a"]}).dir)
    first = active_set()
    first_version = core.model_version("digits")
    core.promote("digits", vocab_run(0.6, {"chars": ["b"]}).dir)
    second = active_set()
    assert second != first and core.model_version("digits") != first_version
    before_rollback = core.model_version("digits")
    assert core.rollback("digits") == "v1"  # default: the version before the active one
    assert active_set() == first
    assert core.model_version("digits") != before_rollback  # pages reload on rollback too
    assert core.rollback("digits", "v2") == "v2" and active_set() == second
    assert [h["action"] for h in core.history("digits")] == ["promote", "promote", "rollback", "rollback"]


def test_rollback_without_an_earlier_version_is_refused():
    core.promote("digits", finished_run().dir)
    with pytest.raises(core.PromotionError, match="no version before v1"):
        core.rollback("digits")
    with pytest.raises(core.PromotionError, match="no version 'v9'"):
        core.rollback("digits", "v9")


def test_a_crash_between_files_leaves_the_old_set_active(monkeypatch):
    core.promote("digits", vocab_run(0.5, {"chars": ["a"]}).dir)
    before = active_set()
    calls = []
    real_copy = shutil.copyfile

    def crash_on_second_file(src, dst, *a, **kw):
        calls.append(src)
        if len(calls) == 2:  # the model is copied, the vocabulary is not
            raise OSError(28, "No space left on device")
        return real_copy(src, dst, *a, **kw)

    monkeypatch.setattr(shutil, "copyfile", crash_on_second_file)
    with pytest.raises(core.PromotionError, match="No space left on device.*active model is unchanged"):
        core.promote("digits", vocab_run(0.9, {"chars": ["b"]}).dir)
    assert active_set() == before and core.active_version("digits") == "v1"
    assert [v["version"] for v in core.list_versions("digits")] == ["v1"]
    assert not list(core.registry_dir("digits").glob(".staging*"))  # no partial version left behind


def test_a_reader_that_resolved_a_version_keeps_reading_that_version():
    core.promote("text", vocab_run(0.5, {"chars": ["a"]}).dir)
    model_file = core.model_path("text")  # what a loader resolved before a promotion
    core.promote("text", vocab_run(0.6, {"chars": ["b"]}).dir)
    assert core.read_json(core.extra_path("text", "vocab.json", model_file)) == {"chars": ["a"]}
    assert core.read_json(core.extra_path("text", "vocab.json")) == {"chars": ["b"]}


def test_flat_models_from_before_the_registry_become_v1():
    folder = core.models_dir()
    folder.mkdir(parents=True)
    src = finished_run(score=0.7)
    shutil.copyfile(src.dir / "model.keras", folder / "digits.keras")
    core.write_json(folder / "digits.json", {"run": "old", "score": {"name": "accuracy", "value": 0.7}})
    old = digest(folder / "digits.keras")
    assert core.active_models("digits") == ["digits"]
    core.promote("digits", finished_run(score=0.8).dir)
    v1, v2 = core.list_versions("digits")
    assert v1["card"]["run"] == "old" and digest(v1["dir"] / "model.keras") == old and v2["active"]
    assert core.rollback("digits") == "v1" and digest(folder / "digits.keras") == old


def test_active_models_lists_every_name_of_a_task():
    core.promote("text", finished_run().dir)
    core.promote("text-sherlock", finished_run().dir)
    assert core.active_models("text") == ["text", "text-sherlock"]
    assert core.active_models("digits") == []


def test_an_unwritable_models_folder_keeps_the_active_model(monkeypatch, tmp_path):
    core.promote("digits", finished_run(score=0.5).dir)
    before, candidate = active_set(), finished_run(score=0.9)
    real_mkdtemp = core.tempfile.mkdtemp

    def refuse(*a, **kw):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(core.tempfile, "mkdtemp", refuse)
    with pytest.raises(core.PromotionError, match="Permission denied.*active model is unchanged"):
        core.promote("digits", candidate.dir)
    assert active_set() == before
    monkeypatch.setattr(core.tempfile, "mkdtemp", real_mkdtemp)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("MODELS_DIR", str(blocker / "models"))  # a folder that cannot exist
    with pytest.raises(core.NotWritable, match="not writable.*unchanged"):
        core.promote("digits", candidate.dir)


def test_failed_and_stopped_runs_cannot_be_promoted():
    for state in ("failed", "stopped"):
        run = finished_run(score=0.99, state=state)
        gate = training.promotion_gate("digits", run)
        assert not gate.allowed and state in gate.message
        with pytest.raises(core.PromotionError, match="cannot be promoted"):
            training.promote_run("digits", run, confirmed=True)
    assert core.active_version("digits") is None


def test_a_worse_or_incomparable_model_needs_confirmation():
    core.promote("digits", finished_run(score=0.9).dir)
    worse = finished_run(score=0.5)
    gate = training.promotion_gate("digits", worse)
    assert gate.needs_confirmation and "50.00% vs active v1 90.00%" in gate.message
    assert "worse by 40.00 points" in gate.message
    with pytest.raises(core.PromotionError, match="without confirmation"):
        training.promote_run("digits", worse)
    assert core.active_version("digits") == "v1"
    assert training.promote_run("digits", worse, confirmed=True) == "v2"
    other = finished_run(score=0.95, benchmark="other:111111111111")
    gate = training.promotion_gate("digits", other)
    assert gate.needs_confirmation and "No common benchmark" in gate.message
    better = finished_run(score=0.95)
    assert not training.promotion_gate("digits", better).needs_confirmation
    near_chance = finished_run(score=0.99)
    core.write_json(near_chance.dir / "card.json", near_chance.card() | {
        "score": {**near_chance.card()["score"], "value": 0.15, "chance": 0.1135}})
    core.rollback("digits", "v1")
    core.promote("digits", finished_run(score=0.12).dir)
    gate = training.promotion_gate("digits", near_chance)
    assert gate.comparison["verdict"] == "better" and gate.needs_confirmation and "Near chance" in gate.message


def test_models_and_rollback_commands(monkeypatch):
    core.promote("digits", finished_run(score=0.5).dir)
    core.promote("digits", finished_run(score=0.6).dir)
    cmd = [sys.executable, "-m", "pipelines.digits"]
    out = subprocess.run(cmd + ["models"], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    lines = out.splitlines()
    assert len(lines) == 2 and lines[1].startswith("* v2") and "accuracy 0.6" in lines[1] and "test images" in lines[1]
    done = subprocess.run(cmd + ["rollback"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0 and "v1 is now the active model" in done.stdout
    assert core.active_version("digits") == "v1"
    bad = subprocess.run(cmd + ["rollback", "v7"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 1 and bad.stderr.strip().startswith("error: digits has no version 'v7'")
    assert "Traceback" not in bad.stderr


def test_compare_uses_card_numbers_on_the_same_benchmark():
    core.promote("digits", finished_run(score=0.9).dir)
    c = training.compare("digits", {"name": "accuracy", "value": 0.95, "higher_is_better": True, "benchmark": BENCH})
    assert c["verdict"] == "better" and c["active"] == 0.9 and c["active_version"] == "v1"
    assert runs.version_rows("digits")[0]["benchmark"] == "test images"


def guarded_run(score: float, ferplus: float):
    """A mood run scored on FER2013 test images, with its FER+ majority accuracy on its card."""
    run = finished_run(task="mood", score=score, benchmark="fer2013-test:000000000000")
    core.write_json(run.dir / "card.json", run.card() | {"test": {"accuracy": score, "ferplus": {"accuracy": ferplus}}})
    return run


def test_a_better_score_bought_with_the_guard_figure_is_judged_worse():
    """Mood: a model that gains FER2013 accuracy by losing more than 1 point of FER+ majority accuracy is kept
    out by if-better and needs the page's second click; within the point, or with no FER+ figure, it is better."""
    core.promote("mood", guarded_run(0.68, 0.81).dir)
    bought = guarded_run(0.70, 0.73)
    gate = training.promotion_gate("mood", bought)
    assert gate.comparison["verdict"] == "worse" and gate.comparison["guard_failed"] and gate.needs_confirmation
    assert "better by 2.00 points" in gate.message
    assert "FER+ majority accuracy falls from 81.00% to 73.00%, more than the 1.00 points allowed" in gate.message
    card = bought.card()
    c = training.compare("mood", card["score"], test=card["test"])
    assert c["verdict"] == "worse"
    with pytest.raises(core.PromotionError, match="without confirmation"):
        training.promote_run("mood", bought)
    assert core.active_version("mood") == "v1"
    assert training.promotion_gate("mood", guarded_run(0.68, 0.79)).comparison["verdict"] == "worse"  # as good, but
    within = guarded_run(0.69, 0.805)
    assert training.promotion_gate("mood", within).comparison["verdict"] == "better"
    untested = finished_run(task="mood", score=0.69, benchmark="fer2013-test:000000000000")  # no FER+ figure
    assert not training.promotion_gate("mood", untested).needs_confirmation
    assert training.promote_run("mood", bought, confirmed=True) == "v2"  # an explicit, informed choice
