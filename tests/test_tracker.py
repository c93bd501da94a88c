"""The run tracker (pipelines/tracker.py) and the runs CLI: rows, curves, compare and the settings
diff, name/note, delete (never the active model's source), the zip bundle, mistakes files."""

import io
import json
import zipfile

import numpy as np
import pytest
from test_core import finished_run, tiny_model

from pipelines import core, runs, tracker

_MODEL: list[bytes] = []


def model_bytes() -> bytes:
    """A tiny .keras file, made once per test session."""
    if not _MODEL:
        path = core.runs_dir() / "tiny.keras"
        core.save_model(tiny_model(), path)
        _MODEL.append(path.read_bytes())
        path.unlink()
    return _MODEL[0]


def synthetic_run(task="digits", lr=2e-3, epochs=3, steps=10, score=0.9, state="finished", batch_size=128,
                  mistakes=True, seed=0):
    """A finished run as a job leaves it: settings, per-batch and per-epoch metrics, a card with a
    confusion matrix, and the mistakes files. No Keras."""
    rng = np.random.default_rng(seed)
    settings = runs.settings_for(task, {"learning_rate": lr, "epochs": epochs, "batch_size": batch_size})
    run = runs.Run.create(task, settings)
    t = 0.0
    for e in range(epochs):
        for s in range(2, steps + 1, 2):
            t += 0.5
            run.append_metric({"kind": "batch", "epoch": e, "step": s, "time": t, "samples_per_s": 500.0,
                               "loss": float(1.5 / (e + s / steps + 0.5) + rng.random() * 0.1),
                               "accuracy": float(min(0.99, 0.5 + 0.15 * (e + s / steps)))})
        run.append_metric({"kind": "epoch", "epoch": e, "time": t, "seconds": 5.0, "samples_per_s": 480.0 + e,
                           "learning_rate": lr / (e + 1), "loss": 1.0 / (e + 1), "accuracy": 0.6 + 0.1 * e,
                           "val_loss": 1.1 / (e + 1), "val_accuracy": 0.55 + 0.1 * e})
    labels = list("0123456789") if task == "digits" else ["angry", "disgust", "fear", "happy", "sad", "surprise",
                                                          "neutral"]
    k = len(labels)
    cm = (np.eye(k, dtype=int) * 90 + rng.integers(0, 5, (k, k))).tolist()
    card = {"task": task, "run": run.id, "settings": run.settings(), "score": {
        "name": "accuracy", "value": score, "higher_is_better": True, "benchmark": "mnist-test:abc",
        "benchmark_name": "test images", "chance": 0.1},
        "test": core.classification_report(np.repeat(np.arange(k), 20), np.repeat(np.arange(k), 20), k, labels)}
    card["test"]["confusion_matrix"] = cm
    core.write_json(run.dir / "card.json", card)
    if state == "finished":
        (run.dir / "model.keras").write_bytes(model_bytes())
    if mistakes:
        images = rng.integers(0, 255, (40, 28, 28)).astype(np.uint8)
        y = np.arange(40) % k
        probs = rng.dirichlet(np.ones(k), 40)
        tracker.write_image_mistakes(run.dir, images, y, probs, labels)
    run.set_status(state, started=1000.0, ended=1000.0 + 60 * epochs)
    return run


def test_rows_newest_first_with_name_note_score_and_model():
    old, new = synthetic_run(score=0.8), synthetic_run(score=0.9, lr=1e-3)
    tracker.set_meta(old, name="  wide   net ", note="first try")
    rows = tracker.rows("digits")
    assert [r["run"] for r in rows] == [new.id, old.id]
    assert rows[1]["name"] == "wide net" and rows[1]["note"] == "first try" and rows[1]["score"] == "80.00%"
    assert rows[0]["lr"] == "1e-3" and rows[0]["epochs"] == 3 and rows[0]["minutes"] == 3.0
    core.promote("digits", old.dir)
    assert tracker.rows("digits")[1]["model"] == "active v1"
    core.promote("digits", new.dir)
    assert [r["model"] for r in tracker.rows("digits")] == ["active v2", "was v1"]


def test_curves_are_raw_and_smoothed_with_the_planned_steps():
    run = synthetic_run(epochs=2, steps=10)
    c = tracker.curves(run)
    assert c["batch_x"][0] == pytest.approx(0.2) and c["epoch_x"] == [1, 2]
    assert len(c["train_loss"]) == len(c["train_loss_smooth"]) == 10
    assert c["train_loss_smooth"][0] == pytest.approx(c["train_loss"][0])  # debiased: starts at the first value
    assert c["lr"] == [2e-3, 1e-3] and c["samples_per_s"] == [480.0, 481.0]
    assert tracker.curves(run) is c  # cached while metrics.jsonl is unchanged
    run.append_metric({"kind": "batch", "epoch": 2, "step": 2, "time": 99, "loss": 0.1, "accuracy": 0.9})
    assert tracker.curves(run) is not c


def test_compare_three_runs_shows_only_the_settings_that_differ():
    a, b, c = synthetic_run(lr=1e-3), synthetic_run(lr=2e-3), synthetic_run(lr=2e-3, batch_size=64)
    data = tracker.compare([a, b, c])
    assert data["diff"] == {"learning_rate": [1e-3, 2e-3, 2e-3], "batch_size": [128, 128, 64]}
    assert "epochs" in data["same"] and len(data["metrics"]) == 3
    assert data["metrics"][0]["val_accuracy"] == pytest.approx(0.75) and data["metrics"][0]["score"] == 0.9


def test_delete_refuses_the_active_models_source_and_a_running_run():
    source, other, live = synthetic_run(), synthetic_run(), synthetic_run(state="running")
    core.promote("digits", source.dir)
    with pytest.raises(core.PromotionError, match="source of the active model"):
        tracker.delete(source)
    assert "is running: stop it first" in tracker.deletable(live)
    tracker.delete(other)
    assert not other.dir.exists() and other.id not in [r["run"] for r in tracker.rows("digits")]
    assert source.dir.exists()


def test_bundle_holds_model_card_and_vocabulary():
    run = finished_run()
    names = zipfile.ZipFile(io.BytesIO(tracker.bundle(run))).namelist()
    assert sorted(n.split("/")[1] for n in names) == ["card.json", "model.keras", "model.vocab.json"]


def test_image_mistakes_are_the_most_confident_wrong_answers(tmp_path):
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.7, 0.3]])
    items = tracker.write_image_mistakes(tmp_path, np.zeros((4, 28, 28), np.uint8), [0, 0, 0, 1], probs, ["a", "b"])
    assert [i["index"] for i in items] == [1, 3, 2]  # 0.8, 0.7, 0.6: most confident first
    assert all(i["true"] != i["predicted"] for i in items)
    assert (tmp_path / "mistakes.png").exists() and tracker.mistakes(runs.Run(tmp_path))["n_wrong"] == 3


def test_confusion_has_counts_row_percentages_and_per_class_table():
    conf = tracker.confusion({"confusion_matrix": [[3, 1], [0, 4]], "labels": ["a", "b"],
                              "per_class": {"a": {"precision": 1, "recall": 0.75, "f1": 0.857}}})
    assert conf["percent"][0] == [75.0, 25.0] and conf["per_class"][0]["support"] == 4


def test_cli_list_show_compare_delete(capsys):
    a, b, c = synthetic_run(lr=1e-3), synthetic_run(), synthetic_run(batch_size=64)
    tracker.main(["list", "--task", "digits"])
    out = capsys.readouterr().out
    assert a.id in out and max(len(line) for line in out.splitlines()) <= 120
    tracker.main(["list", "--json"])
    assert [r["run"] for r in json.loads(capsys.readouterr().out)] == [c.id, b.id, a.id]
    tracker.main(["compare", a.id, b.id, c.id])
    out = capsys.readouterr().out
    assert "learning_rate" in out and "batch_size" in out and "epochs " not in out.split("differ")[1]
    tracker.main(["show", a.id, "--json"])
    assert json.loads(capsys.readouterr().out)["run"] == a.id
    tracker.main(["delete", a.id])
    assert not a.dir.exists()
    with pytest.raises(core.PromotionError, match="no run"):
        tracker.main(["show", a.id])


def test_fine_tune_choices_and_field_errors():
    run = finished_run()
    core.promote("digits", run.dir)
    choices = runs.init_choices("digits")
    assert list(choices)[0].startswith("random") and list(choices)[1].startswith("active model v1")
    assert runs.suggested_lr(2e-3, fine_tune=True) == 2e-4 and runs.suggested_lr(2e-3, fine_tune=False) == 2e-3
    errors = runs.field_errors("digits", {"epochs": 0, "learning_rate": 3e-4, "init_from": "/no/model.keras"})
    assert set(errors) == {"epochs", "init_from"} and "not found" in errors["init_from"]
    args = runs.train_args("digits", {"learning_rate": 3e-4, "init_from": choices[list(choices)[1]]})
    assert args[args.index("--init-from") + 1].endswith("v1/model.keras") and "0.0003" in args


def test_text_mistakes_mark_surprising_characters_and_sample_completions(tiny_text_model):
    run, _card, _models = tiny_text_model
    found = tracker.mistakes(run)
    assert found["kind"] == "text" and found["lines"]
    line = found["lines"][0]
    assert len(line["text"]) == len(line["bits"]) and all(b >= 0 for b in line["bits"])
    top = tracker.surprising(line, top=3)
    assert min(line["bits"][i] for i in top) >= sorted(line["bits"])[-3]
    assert found["completions"] and all(c["completion"] for c in found["completions"])


def test_mood_mistakes_grid_is_written_at_evaluation(tiny_mood_model):
    run, _card, _models = tiny_mood_model
    found = tracker.mistakes(run)
    assert found["kind"] == "images" and found["n"] == 28
    assert all(i["true"] != i["predicted"] for i in found["items"])
    assert not found["items"] or (run.dir / "mistakes.png").exists()


def test_fine_tuning_text_keeps_the_starting_models_vocabulary(tiny_text_model):
    from conftest import TINY_TEXT

    from pipelines import text

    start, _card, _models = tiny_text_model
    settings = text.Settings(epochs=1, units=32, embed=8, batch_size=32, dropout=0.1,
                             init_from=str(start.dir / "model.keras"))
    run = runs.Run.create("text", settings)
    with runs.running(run):
        card = text.train(settings, run, text=TINY_TEXT.replace("cat", "fox"))  # f, x: not in its vocabulary
    assert card and core.read_json(run.dir / "model.vocab.json") == core.read_json(start.dir / "model.vocab.json")


def test_text_mistakes_show_lines_apart_even_from_a_short_held_out_text(tiny_text_model, tmp_path):
    """A small corpus's held-out text gave four lines that repeated one another's characters."""
    models = tiny_text_model[2]
    model, vocab = core.load_model(models / "text.keras"), core.read_json(models / "text.vocab.json")
    rng = np.random.default_rng(0)
    held = rng.integers(0, len(vocab["chars"]), 40 + 110 + 150)  # room for two lines of 110 apart, not four
    out = tracker.write_text_mistakes(tmp_path, model, vocab, held, window=40, length=110, prompts=0)
    chars = "".join(vocab["chars"][i] for i in held)
    starts = [chars.index(line["text"]) for line in out["lines"]]
    assert len(starts) == 2 and starts[1] - starts[0] >= 110
    long = rng.integers(0, len(vocab["chars"]), 2000)
    assert len(tracker.write_text_mistakes(tmp_path, model, vocab, long, prompts=0)["lines"]) == 4
