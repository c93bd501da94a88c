"""AppTest of the Training page: empty, form defaults, invalid settings next to their field, a
finished run, the promotion gate, failed runs, the registry view and rollback, the run browser,
an old run's details, compare, delete, the mistakes grid, fine-tuning, and 200 runs."""

import json

import numpy as np
from conftest import ROOT
from streamlit.testing.v1 import AppTest
from test_core import finished_run
from test_tracker import synthetic_run

from pipelines import core, runs, tracker

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


def form_values(at):
    values = {n.label: n.value for n in at.number_input}
    values["Learning rate"] = next(s.value for s in at.select_slider if s.label == "Learning rate")
    return values


def test_the_form_starts_from_each_tasks_own_defaults():
    at = run_page()
    assert form_values(at) == {"Epochs": 15, "Batch size": 128, "Learning rate": 2e-3}
    assert at.checkbox(key="augment-digits-default-new").value is True
    at.radio(key="arch-digits").set_value("baseline").run()
    assert form_values(at) == {"Epochs": 10, "Batch size": 128, "Learning rate": 1e-3}
    at.segmented_control[0].set_value("mood").run()
    assert form_values(at) == {"Epochs": 40, "Batch size": 64, "Learning rate": 2e-3}
    assert list(at.radio(key="arch-mood").options) == ["default", "baseline", "wide"]  # the task's own choices
    at.radio(key="arch-mood").set_value("wide").run()
    assert not at.exception and form_values(at) == {"Epochs": 40, "Batch size": 64, "Learning rate": 2e-3}


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
    table = next(d.value for d in at.dataframe if "version" in d.value.columns)
    assert list(table["version"]) == ["v1", "v2"] and list(table["active"]) == [False, True]
    at.button(key="rollback-digits-v1").click().run()
    assert not at.exception
    assert core.active_version("digits") == "v1" and core.active_card("digits")["run"] == first.id
    assert any("v1 is the active model again" in s.value for s in at.success)


def test_invalid_settings_start_nothing_and_are_shown_next_to_their_field():
    at = run_page()
    at.text_input[0].set_value("/no/such/folder")
    at.button[0].click().run()
    assert not at.exception and runs.list_runs("digits") == []
    assert "1 setting to fix" in at.error[0].value
    assert at.error[1].value == "data folder /no/such/folder not found"


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
    assert "Not evaluated: the run failed (why: above, and in its log)." in [c.value for c in at.caption]


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


# ---------------------------------------------------------------- the tracker


def pick(at, *run_ids):
    at.multiselect(key="picked-digits").set_value(list(run_ids)).run()
    assert not at.exception
    return at


def test_an_old_runs_details_open_with_curves_settings_confusion_and_mistakes():
    old = synthetic_run(score=0.81, lr=1e-3)
    synthetic_run(score=0.9)
    tracker.set_meta(old, name="small lr", note="the first one")
    at = pick(run_page(), old.id)
    assert any("**small lr** · finished · 81.00% on test images" in m.value for m in at.markdown)
    assert "the first one" in [c.value for c in at.caption]
    names = [trace_names(c) for c in at.get("plotly_chart")]
    assert ["train (raw)", "train (smoothed 0.8)", "validation (per epoch)"] in names  # loss and accuracy
    assert ["learning rate", "samples/s"] in names and [None] in names  # rates, confusion matrix
    for chart in at.get("plotly_chart"):  # each title on its own line above the plot, under plotly's toolbar,
        layout = json.loads(chart.proto.spec)["layout"]  # which covered a long one on a phone
        assert (layout["title"]["yref"], layout["title"]["yanchor"]) == ("paper", "bottom")
        assert layout["margin"]["t"] >= 56
    settings = next(d.value for d in at.dataframe if list(d.value.columns) == ["setting", "value"])
    assert settings.set_index("setting").loc["learning_rate", "value"] == "0.001"
    per_class = next(d.value for d in at.dataframe if "support" in d.value.columns)
    assert list(per_class["class"]) == list("0123456789")
    wrong = next(d.value for d in at.dataframe if "predicted" in d.value.columns)
    assert len(wrong) > 0 and (wrong["true"] != wrong["predicted"]).all()
    assert list(wrong["confidence"]) == sorted(wrong["confidence"], reverse=True)


def traces(chart) -> list[dict]:
    return json.loads(chart.proto.spec)["data"]


def trace_names(chart) -> list[str]:
    return [t.get("name") for t in traces(chart)]


def test_compare_three_runs_overlays_three_and_diffs_only_what_differs():
    a, b, c = synthetic_run(lr=1e-3), synthetic_run(lr=2e-3), synthetic_run(lr=2e-3, batch_size=64)
    at = pick(run_page(), a.id, b.id, c.id)
    assert any(s.value == "Compare 3 runs" for s in at.subheader)
    loss = next(ch for ch in at.get("plotly_chart") if any(t.get("meta") == "val" for t in traces(ch)))
    assert sorted(t["name"] for t in traces(loss) if t["meta"] == "val") == sorted(r.id for r in (a, b, c))
    diff = next(d.value for d in at.dataframe if "setting" in d.value.columns and a.id in d.value.columns)
    assert sorted(diff["setting"]) == ["batch_size", "learning_rate"]
    metrics = next(d.value for d in at.dataframe if "val_loss" in d.value.columns)
    assert len(metrics) == 3
    same = next(c.value for c in at.caption if c.value.startswith("Same in all"))
    assert "init_from=none" in same and "=," not in same  # an empty setting said, not left blank


def test_delete_asks_first_and_refuses_the_active_models_source():
    source, other = synthetic_run(score=0.9), synthetic_run(score=0.5)
    core.promote("digits", source.dir)
    at = pick(run_page(), other.id)
    at.button(key=f"delete-{other.id}").click().run()
    assert other.dir.exists() and any("for good" in w.value for w in at.warning)
    at.button(key=f"delete-yes-{other.id}").click().run()
    assert not at.exception and not other.dir.exists()
    assert any(f"Deleted run {other.id}" in s.value for s in at.success)
    assert other.id not in list(at.dataframe[0].value["run"])
    at = pick(at, source.id)
    assert not [b for b in at.button if b.key == f"delete-{source.id}"]
    assert any("source of the active model (v1)" in c.value for c in at.caption)


def test_rename_and_note_are_saved():
    run = synthetic_run()
    at = run_page()
    at.text_input(key=f"name-{run.id}").set_value("baseline 1")
    at.text_area(key=f"note-{run.id}").set_value("augment off")
    at.button[[b.label for b in at.button].index("Save name and note")].click().run()
    assert tracker.meta(run) == {"name": "baseline 1", "note": "augment off"}
    assert at.dataframe[0].value.loc[0, "name"] == "baseline 1"


def test_fine_tuning_starts_from_a_version_with_a_smaller_learning_rate(monkeypatch):
    core.promote("digits", synthetic_run().dir)
    launched = []
    monkeypatch.setattr(runs, "launch", lambda task, args, engine="local": launched.append(args) or runs.Run.create(task, {}))
    at = run_page()
    start = at.selectbox(key="init-digits")
    at = start.set_value(next(o for o in start.options if o.startswith("active model v1"))).run()
    assert form_values(at)["Learning rate"] == 2e-4
    at.button[[b.label for b in at.button].index("Train")].click().run()
    assert not at.exception and launched
    args = launched[0]
    assert args[args.index("--init-from") + 1].endswith("v1/model.keras") and "0.0002" in args


def test_two_hundred_runs_render_without_errors():
    import time

    for i in range(200):
        synthetic_run(score=0.5 + i / 1000, mistakes=i < 3, seed=i)
    t0 = time.perf_counter()
    at = run_page()
    seconds = time.perf_counter() - t0
    assert not at.exception and not at.error
    assert len(at.dataframe[0].value) == 200
    print(f"page with 200 runs: {seconds:.2f} s (AppTest, first load)")


def test_the_run_browser_can_show_every_task():
    synthetic_run("digits")
    synthetic_run("mood")
    at = run_page()
    assert list(at.dataframe[0].value["status"]) == ["finished"]
    at.toggle(key="runs-all-tasks").set_value(True).run()
    assert sorted(at.dataframe[0].value["task"]) == ["digits", "mood"]


def test_text_mistakes_highlight_surprising_characters_and_show_completions():
    run = synthetic_run("text", mistakes=False)
    core.write_json(run.dir / "mistakes.json", {"kind": "text", "lines": [
        {"text": "the <cat> sat", "bits": [0.1, 0.2, 0.1, 0.3, 9.0, 0.5, 0.4, 0.2, 7.0, 0.1, 0.2, 0.3, 0.1]}],
        "completions": [{"prompt": "the free spi", "completion": "rit of *man*"}]})
    at = run_page()
    at.segmented_control[0].set_value("text").run()
    assert not at.exception
    html = [h.proto.body for h in at.get("html")]
    line = next(h for h in html if "&lt;" in h)
    assert line.count("<mark") == 8 and "9.0 bits" in line  # the 8 most surprising characters, escaped text
    assert any("<b>rit of *man*</b>" in h for h in html)


def test_the_form_offers_where_the_job_runs(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    at = run_page()
    engine = next(r for r in at.radio if r.label == "Run on")
    assert not at.exception and engine.value == "local"  # this server, unless RAY_ADDRESS says otherwise
    assert "ray" in engine.options or any("Ray" in o for o in engine.options)


def test_a_mood_model_that_buys_fer2013_accuracy_with_fer_plus_asks_first_and_says_why():
    from test_registry import guarded_run

    core.promote("mood", guarded_run(0.68, 0.81).dir)
    bought = guarded_run(0.70, 0.73)
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["task"] = "mood"
    at.run()
    at.button(key=f"promote-{bought.id}").click().run()
    assert not at.exception and core.active_version("mood") == "v1"  # nothing yet
    warning = next(w.value for w in at.warning if "Promote anyway" in w.value)
    assert "better by 2.00 points" in warning and "FER+ majority accuracy falls from 81.00% to 73.00%" in warning
    at.button(key=f"yes-live-{bought.id}").click().run()
    assert not at.exception and core.active_card("mood")["run"] == bought.id


def test_a_setting_a_run_does_not_have_is_blank_in_the_table():
    """An ensemble trains nothing: no learning rate, batch or planned epochs. The table said "None"."""
    run = runs.Run.create("digits", {"members": ["a", "b"]})
    run.set_status("finished")
    row = run_page().dataframe[0].value.iloc[0]
    assert (row["run"], row["lr"], row["batch"], row["of"]) == (run.id, "", "", "")
    import pyarrow as pa

    from views.train_runs import run_frame

    rows = tracker.rows("digits") + tracker.rows(synthetic_run().task)
    pa.Table.from_pandas(run_frame(rows, every_task=False))  # no mixed column that Streamlit must fix (it logs)


def test_the_task_comes_from_the_link_and_goes_into_it():
    """A reload (or a shared link) opens the task it was on; it went back to digits."""
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.query_params["task"] = "text"
    at.run()
    assert not at.exception and at.segmented_control[0].value == "text"
    at.segmented_control[0].set_value("mood").run()  # the link follows in the browser (tests/test_browser_training)
    assert not at.exception and at.segmented_control[0].value == "mood"
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.query_params["task"] = "no such task"
    assert at.run().segmented_control[0].value == "digits"
