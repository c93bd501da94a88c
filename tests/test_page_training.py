"""AppTest of the Training page: empty, invalid settings, a finished run, promotion."""

import numpy as np
from conftest import ROOT
from streamlit.testing.v1 import AppTest
from test_core import finished_run

from pipelines import core, runs

PAGE = str(ROOT / "views/training.py")


def run_page():
    return AppTest.from_file(PAGE, default_timeout=60).run()


def test_no_runs_yet():
    at = run_page()
    assert not at.exception
    assert any("No digits runs yet" in i.value for i in at.info)


def test_finished_run_shows_evaluation_and_can_be_promoted():
    run = finished_run("digits", score=0.9)
    cm = np.eye(10, dtype=int).tolist()
    card = run.card() | {"test": {"accuracy": 0.9, "macro_f1": 0.9, "confusion_matrix": cm, "labels": list("0123456789"),
                                  "per_class": {str(i): {"precision": 1, "recall": 1, "f1": 1} for i in range(10)}}}
    core.write_json(run.dir / "card.json", card)
    run.append_metric({"kind": "epoch", "epoch": 0, "time": 1.0, "loss": 0.5, "accuracy": 0.8,
                       "val_loss": 0.4, "val_accuracy": 0.85})
    core.write_data_view(run.dir, {str(i): 10 for i in range(10)})
    at = run_page()
    assert not at.exception
    assert at.metric[0].value == "90.00%"
    at.button(key=f"promote-{run.id}").click().run()
    assert not at.exception
    assert core.active_card("digits")["run"] == run.id and run.status()["promoted"]


def test_invalid_settings_start_nothing():
    at = run_page()
    at.text_input[0].set_value("/no/such/folder")
    at.button[0].click().run()
    assert not at.exception
    assert "data folder /no/such/folder not found" in at.error[0].value and runs.list_runs("digits") == []


def test_a_failed_run_says_so():
    run = runs.Run.create("mood", {"epochs": 1})
    run.set_status("failed", error="ValueError: boom")
    at = run_page()
    at.segmented_control[0].set_value("mood").run()
    assert not at.exception
    assert "boom" in at.warning[0].value and "not touched" in at.warning[0].value
