"""AppTest of the Training page: empty, form defaults, invalid settings, a finished run,
the promotion gate, failed runs, the registry view and rollback."""

import numpy as np
from conftest import ROOT
from streamlit.testing.v1 import AppTest
from test_core import finished_run

from pipelines import core, runs

PAGE = str(ROOT / "views/training.py")


def run_page():
    return AppTest.from_file(PAGE, default_timeout=60).run()


def with_evaluation(run, accuracy):
    cm = np.eye(10, dtype=int).tolist()
    card = run.card() | {"test": {"accuracy": accuracy, "macro_f1": 0.9, "confusion_matrix": cm,
                                  "labels": list("0123456789"),
                                  "per_class": {str(i): {"precision": 1, "recall": 1, "f1": 1} for i in range(10)}}}
    core.write_json(run.dir / "card.json", card)
    return run


def test_no_runs_yet():
    at = run_page()
    assert not at.exception
    assert any("No digits runs yet" in i.value for i in at.info)


def test_the_form_starts_from_each_tasks_own_defaults():
    at = run_page()
    values = {n.label: n.value for n in at.number_input}
    assert values == {"Epochs": 15, "Batch size": 128, "Learning rate": 2e-3}
    assert at.checkbox(key="augment-digits-default").value is True
    at.radio(key="arch-digits").set_value("baseline").run()
    values = {n.label: n.value for n in at.number_input}
    assert values == {"Epochs": 10, "Batch size": 128, "Learning rate": 1e-3}
    at.segmented_control[0].set_value("mood").run()
    values = {n.label: n.value for n in at.number_input}
    assert values == {"Epochs": 40, "Batch size": 64, "Learning rate": 2e-3}


def test_finished_run_shows_evaluation_and_can_be_promoted():
    run = with_evaluation(finished_run("digits", score=0.9), 0.9)
    run.append_metric({"kind": "epoch", "epoch": 0, "time": 1.0, "loss": 0.5, "accuracy": 0.8,
                       "val_loss": 0.4, "val_accuracy": 0.85})
    core.write_data_view(run.dir, {str(i): 10 for i in range(10)})
    at = run_page()
    assert not at.exception
    assert at.metric[0].value == "90.00%"
    assert any("No active digits model yet" in m.value for m in at.markdown)
    at.button(key=f"promote-{run.id}").click().run()
    assert not at.exception
    assert core.active_card("digits")["run"] == run.id and run.status()["promoted"]
    assert any("as digits v1" in s.value for s in at.success)


def test_a_worse_model_needs_a_second_click_that_says_by_how_much():
    core.promote("digits", finished_run("digits", score=0.9).dir)
    worse = with_evaluation(finished_run("digits", score=0.5), 0.5)
    at = run_page()
    assert any("50.00% vs active v1 90.00%" in m.value for m in at.markdown)
    at.button(key=f"promote-{worse.id}").click().run()
    assert not at.exception and core.active_version("digits") == "v1"  # nothing yet
    warning = next(w.value for w in at.warning if "Promote anyway" in w.value)
    assert "worse by 40.00 points" in warning and "90.00%" in warning
    at.button(key=f"cancel-live-{worse.id}").click().run()
    assert core.active_version("digits") == "v1" and not at.warning
    at.button(key=f"promote-{worse.id}").click().run()
    at.button(key=f"yes-live-{worse.id}").click().run()
    assert not at.exception and core.active_card("digits")["run"] == worse.id


def test_the_registry_lists_versions_and_rolls_back_in_one_click():
    first = finished_run("digits", score=0.9)
    core.promote("digits", first.dir)
    core.promote("digits", finished_run("digits", score=0.8).dir)
    at = run_page()
    table = at.dataframe[0].value
    assert list(table["version"]) == ["v1", "v2"] and list(table["active"]) == [False, True]
    at.button(key="rollback-digits-v1").click().run()
    assert not at.exception
    assert core.active_version("digits") == "v1" and core.active_card("digits")["run"] == first.id
    assert any("v1 is the active model again" in s.value for s in at.success)


def test_invalid_settings_start_nothing():
    at = run_page()
    at.text_input[0].set_value("/no/such/folder")
    at.button[0].click().run()
    assert not at.exception
    assert "data folder /no/such/folder not found" in at.error[0].value and runs.list_runs("digits") == []


def test_a_failed_run_says_so_and_cannot_be_promoted():
    run = finished_run("mood", score=0.99, state="failed")
    run.set_status("failed", error="Corpus file x.txt is empty: pick a plain-text file with prose in it.")
    at = run_page()
    at.segmented_control[0].set_value("mood").run()
    assert not at.exception
    assert at.warning[0].value == ("This run failed: Corpus file x.txt is empty: pick a plain-text file with "
                                   "prose in it.")
    assert any("not touched" in c.value for c in at.caption)
    assert not [b for b in at.button if b.key and b.key.startswith("promote")]


def test_a_corrupt_active_model_is_named_with_rollback_at_hand():
    core.promote("digits", finished_run("digits", score=0.9).dir)
    core.promote("digits", finished_run("digits", score=0.8).dir)
    (core.registry_dir("digits") / "v2" / "model.keras").write_bytes(b"garbage")
    at = run_page()
    assert not at.exception
    assert "v2/model.keras is corrupt" in at.error[0].value and "roll back" in at.error[0].value
    at.button(key="rollback-digits-v1").click().run()
    assert core.active_version("digits") == "v1" and not at.error


def test_a_failed_automatic_promotion_is_said_on_the_page():
    run = with_evaluation(finished_run("digits", score=0.9), 0.9)
    run.set_status("finished", promoted=False, promote_error="Could not write the new digits version (No space "
                   "left on device); nothing was promoted and the active model is unchanged.")
    at = run_page()
    assert not at.exception
    assert "Automatic promotion failed: Could not write" in at.error[0].value
