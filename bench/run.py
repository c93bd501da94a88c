"""Measure what the README claims, on the real data; write bench/results/results.{json,md}.

    DATA_DIR=../shared/data python -m bench.run [--only digits,text,mood,app]

Accuracy of each committed model on its test data, single-request latency (median, p95) of
each page's predict path, text-pipeline memory on both books, training throughput, the
app's peak memory with all models loaded and time to first render in a browser. The
real-browser load test is bench/load.py. Needs the data in $DATA_DIR (see the README).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench import quality
from pipelines import core

RESULTS = Path(__file__).resolve().parent / "results"


def timed(fn, n: int = 200, warmup: int = 5) -> dict:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return {"median_ms": round(float(np.median(times)), 2), "p95_ms": round(float(np.percentile(times, 95)), 2),
            "n": n}


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cores": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M")}


def throughput(model, dataset, steps: int = 30) -> float:
    """Training samples per second over `steps` batches after a warm-up batch."""
    it = iter(dataset.repeat())
    batch = next(it)
    model.train_on_batch(*batch)
    seen, t0 = 0, time.perf_counter()
    for _ in range(steps):
        batch = next(it)
        model.train_on_batch(*batch)
        seen += len(batch[0])
    return round(seen / (time.perf_counter() - t0), 1)


# ---------------------------------------------------------------- digits


def bench_digits(data_dir) -> dict:
    import keras

    from pipelines import digits

    model = core.load_model(core.model_path("digits"))
    x_train, y_train, x_test, y_test = digits.load_data(data_dir)
    report = digits.evaluate(model, x_test, y_test)
    fn = core.fast_predict(model)
    # A drawing as the canvas sends it: an MNIST test digit blown up to 280x280 RGBA.
    canvases = []
    for img in x_test[:20]:
        rgba = np.zeros((280, 560, 4), np.uint8)
        rgba[:, 140:420, 3] = np.kron(img, np.ones((10, 10), np.uint8))
        canvases.append(rgba)
    i = iter(range(10**9))
    latency = timed(lambda: digits.read_canvas(fn, canvases[next(i) % 20]))
    rates = {}
    for settings in (digits.Settings(), digits.Settings.baseline()):
        train_model = digits.build_model(settings)
        train_model.compile(keras.optimizers.Adam(), "sparse_categorical_crossentropy")
        ds = digits.make_dataset(x_train[:8192], y_train[:8192], settings.batch_size, settings.augment, True)
        rates[settings.arch] = throughput(train_model, ds)
    return {"test_accuracy": report["accuracy"], "macro_f1": report["macro_f1"], "n_test": report["n"],
            "read_canvas_latency": latency, "train_samples_per_s": rates}


# ---------------------------------------------------------------- text


def peak_rss_of(code: str) -> float:
    """Peak resident memory (MB) of a fresh Python running `code`. From VmHWM, not getrusage: a child's
    ru_maxrss keeps the parent's peak across fork and exec, so every figure read this bench's own peak."""
    peak = "\nimport re;print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))"
    out = subprocess.run([sys.executable, "-c", code + peak], capture_output=True, text=True, cwd=core.ROOT, check=True)
    return round(int(out.stdout.strip().splitlines()[-1]) / 1024, 1)


def typed_latency(text, lm, vocab: dict, held: str, keys: int = 400) -> dict:
    """Suggestions as the page makes them while a person types: the held-out text's first `keys`
    characters, one key at a time, each text one call (`lm` fresh, its memo empty: a key reads on
    from the reading of the text before it)."""
    times = []
    for n in range(1, min(keys, len(held)) + 1):
        t0 = time.perf_counter()
        text.suggest(lm, vocab, held[:n])
        times.append((time.perf_counter() - t0) * 1000)
    return {"median_ms": round(float(np.median(times)), 2), "p95_ms": round(float(np.percentile(times, 95)), 2),
            "n": len(times)}


def bench_text(data_dir) -> dict:
    import keras

    from pipelines import text

    directory = core.data_dir(data_dir)
    lm, vocab, card = text.load("text")  # the page's model, vocabulary and word list
    settings = text.reading_settings(card)
    corpus = text.load_corpus(None, directory)
    train_ids = text.prepare(corpus, settings, vocab)[0]
    # The same function and settings as the model cards (pipelines.text.evaluate): one measurement.
    report = text.heldout_report(core.model_path("text"), data_dir=directory)
    if before := quality.first_version("text"):  # the model shipped before this round, measured the same way
        report["before"] = text.heldout_report(before, data_dir=directory) | {"version": Path(before).parent.name}
    latency = typed_latency(text, lm, vocab, text.held_out_text(corpus, settings.holdout))  # lm has read nothing yet
    # Memory of one pass over all training windows through tf.data, for growing corpora.
    memory = {"no corpus (TensorFlow imported)": peak_rss_of("import tensorflow\nfrom pipelines import text")}
    books = {"nietzsche": directory / "text" / "nietzsche.txt", "sherlock_holmes": directory / "text" / "sherlock_holmes.txt"}
    for name, path in books.items():
        for times in (1, 8):
            code = (f"from pipelines import text as T\nimport numpy as np\ns=T.Settings()\n"
                    f"t=T.normalize(open({str(path)!r}, encoding='utf-8-sig').read())*{times}\n"
                    f"ids,_=T.encode(t,T.build_vocab(t))\n"
                    f"n=sum(1 for _ in T.make_dataset(ids,s,shuffle=True))\nprint(len(t))")
            memory[f"{name} x{times}"] = peak_rss_of(code)
    rates = {}
    for s in (text.Settings(), text.Settings.baseline()):
        train_model = text.build_model(s, len(vocab["chars"]))
        train_model.compile(keras.optimizers.Adam(), "sparse_categorical_crossentropy")
        rates[s.arch] = throughput(train_model, text.make_dataset(train_ids, s, shuffle=True))
    return {"heldout": report, "suggest_latency_typed": latency, "peak_rss_mb_one_epoch_of_windows": memory,
            "train_samples_per_s": rates}


# ---------------------------------------------------------------- mood


def bench_mood(data_dir) -> dict:
    import cv2
    import keras

    from pipelines import mood

    model = core.load_model(core.model_path("mood"))
    data = mood.load_data(data_dir)
    report = mood.evaluate(model, data)
    fn = mood.predict_fn(model)
    import matplotlib.cbook

    photo = cv2.cvtColor(cv2.imread(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)),
                         cv2.COLOR_BGR2RGB)
    frame = np.zeros((480, 640, 3), np.uint8)
    small = cv2.resize(photo, (410, 480))
    frame[:, 115:525] = small
    assert len(mood.find_faces(frame)) == 1
    latency = timed(lambda: mood.read_photo(fn, frame), n=100)
    rates = {}
    for settings in (mood.Settings(), mood.Settings.baseline()):
        train_model = mood.build_model(settings)
        train_model.compile(keras.optimizers.Adam(), "categorical_crossentropy")
        ds = mood.make_dataset(data.x_train[:4096], data.y_train[:4096], settings.batch_size, settings.augment, True)
        rates[settings.arch] = throughput(train_model, ds)
    return {"test": {k: report[k] for k in ("accuracy", "public_test_accuracy", "private_test_accuracy", "macro_f1")},
            "per_class_f1": {k: v["f1"] for k, v in report["per_class"].items()},
            "detect_and_classify_640x480_latency": latency, "train_samples_per_s": rates}


# ---------------------------------------------------------------- app


def bench_app() -> dict:
    """Time from `streamlit run` to the digits page drawn in Chromium, then the server's
    peak memory once all three demo pages have loaded their models."""
    sys.path.insert(0, str(core.ROOT / "tests"))
    from browser import DESKTOP, chromium, streamlit_server

    t0 = time.perf_counter()
    with streamlit_server({}) as url, chromium() as open_tab:
        page = open_tab(DESKTOP).page
        page.goto(f"{url}/digits")
        page.locator("canvas.upper-canvas").wait_for(timeout=120_000)
        first_render = round(time.perf_counter() - t0, 2)
        page.goto(f"{url}/text")
        page.locator("textarea[aria-label='Your text']").wait_for(timeout=120_000)
        page.goto(f"{url}/mood")
        page.get_by_test_id("stCameraInput").wait_for(timeout=120_000)
        time.sleep(2)
        status = Path(f"/proc/{streamlit_server.proc.pid}/status").read_text()
        peak = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))
    return {"streamlit_run_to_first_render_s": first_render, "server_peak_rss_mb_all_models_loaded": round(peak / 1024, 1)}


# ---------------------------------------------------------------- report


SECTIONS = ("digits", "text", "mood", "app", "load", "quality")


def measured_on(results: dict) -> str:
    """Where and when the sections were measured: one machine, or each machine with its sections
    (a partial rerun, `--only`, on another machine keeps the others' figures and says so)."""
    groups: dict[tuple, list] = {}
    for name in SECTIONS:
        if name in results:
            m = results[name].get("machine") or results["machine"]
            groups.setdefault((m["cores"], m["cpu"], m["python"]), []).append((name, m["date"]))
    if len(groups) <= 1:
        m = results["machine"]
        return f"Measured {m['date']} on {m['cores']} cores ({m['cpu']}), Python {m['python']}."
    parts = [f"{', '.join(n for n, _ in names)} on {cores} cores ({cpu}), Python {python}, "
             f"{max(d for _, d in names)[:10]}" for (cores, cpu, python), names in groups.items()]
    return "Measured on different machines (compare figures within a machine): " + "; ".join(parts) + "."


def read_results() -> dict:
    """The results file, each section stamped with the machine it was measured on (older files
    named one machine for all)."""
    results = core.read_json(RESULTS / "results.json", {}) or {}
    for name in SECTIONS:
        if name in results and "machine" in results:
            results[name].setdefault("machine", results["machine"])
    return results


def markdown(results: dict) -> str:
    lines = [measured_on(results), "", "| what | value |", "| --- | --- |"]

    def row(name, value):
        lines.append(f"| {name} | {value} |")

    if d := results.get("digits"):
        row("digits: test accuracy (10,000 MNIST test images)", f"{d['test_accuracy']:.2%}")
        row("digits: preprocess + predict one drawing", _lat(d["read_canvas_latency"]))
        row("digits: training throughput (default / baseline)", _rates(d["train_samples_per_s"], "samples/s"))
    if t := results.get("text"):
        h = t["heldout"]
        b = h.get("before")
        was = (lambda key, fmt: f" (before, {b['version']}: {format(b[key], fmt)})") if b else (lambda key, fmt: "")
        row("text: held-out bits per character (LSTM / n-gram)",
            f"{h['bits_per_char']:.3f} / {h['ngram']['bits_per_char']:.3f}" + was("bits_per_char", ".3f"))
        row("text: next-word top-3 accuracy (LSTM / n-gram)",
            f"{h['next_word_top3']:.1%} / {h['ngram']['next_word_top3']:.1%}" + was("next_word_top3", ".1%"))
        row("text: next-character top-1 (LSTM / n-gram)",
            f"{h['next_char_top1']:.1%} / {h['ngram']['next_char_top1']:.1%}" + was("next_char_top1", ".1%"))
        row(f"text: suggestions per key typed ({t['suggest_latency_typed']['n']} held-out characters, one key at a "
            "time)", _lat(t["suggest_latency_typed"]))
        row("text: peak memory, one pass over all windows", ", ".join(f"{k} {v:.0f} MB" for k, v in t["peak_rss_mb_one_epoch_of_windows"].items()))
        row("text: training throughput (default / baseline)", _rates(t["train_samples_per_s"], "windows/s"))
    if o := results.get("mood"):
        s = o["test"]
        row("mood: test accuracy (7,178 FER2013 test images)", f"{s['accuracy']:.2%}")
        row("mood: PublicTest / PrivateTest accuracy", f"{s['public_test_accuracy']:.2%} / {s['private_test_accuracy']:.2%}")
        row("mood: per-class F1", ", ".join(f"{k} {v:.2f}" for k, v in o["per_class_f1"].items()))
        row("mood: detect + classify a 640x480 photo", _lat(o["detect_and_classify_640x480_latency"]))
        row("mood: training throughput (default / baseline)", _rates(o["train_samples_per_s"], "samples/s"))
    if a := results.get("app"):
        row("app: server peak memory, all three models loaded", f"{a['server_peak_rss_mb_all_models_loaded']:.0f} MB")
        row("app: `streamlit run` to first page rendered in Chromium", f"{a['streamlit_run_to_first_render_s']:.1f} s")
    if lo := results.get("load"):
        load_rows(lo, row)
    if q := results.get("quality"):
        lines += ["", "Beyond the test sets (`bench/quality.py`): the active models against the first ones (shipped before the registry, v1).", ""]
        names = (f"active ({q['active']['digits']} / {q['active']['mood']})",
                 f"before ({q['before']['digits']} / {q['before']['mood']})")
        lines += quality.markdown(q["rows"], names).splitlines()
    return "\n".join(lines) + "\n"


# Server CPU per interaction before this round's changes, on a real server driven by Chromium
# (issue "Many people at once", file watcher off; same measure: server CPU time over browser-to-server messages).
CPU_BEFORE_MS = {"digits": 530, "text": 620, "mood": 630, "training_idle_tab": 475}
IDLE_TRAINING_TAB_BEFORE = 0.33  # share of one core


def load_rows(lo: dict, row) -> None:
    """The real-browser load test (bench/load.py) as README rows."""
    pages = lo.get("per_page", {})
    if pages:
        row("server CPU per interaction (digits stroke / text suggestions / mood photo / Training tick), before -> now",
            " / ".join(f"{CPU_BEFORE_MS[k]} -> {pages[k]['server_cpu_ms_per_message']:.0f} ms"
                       for k in ("digits", "text", "mood", "training_idle_tab")))
        if all("net_server_cpu_ms_per_message" in pages[k] for k in ("digits", "text", "mood", "training_idle_tab")):
            row("the same, net of the server's own background with no tab open "
                f"({pages['training_idle_tab']['no_tab_share_of_one_core']:.2%} of a core, over each sample's time)",
                " / ".join(f"{pages[k]['net_server_cpu_ms_per_message']:.0f} ms"
                           for k in ("digits", "text", "mood", "training_idle_tab")))
        if all("opening_the_page" in pages[k] for k in ("digits", "text", "mood")):
            row("opening the page by its URL (a new session, a full run), server CPU per message: digits / text / mood",
                " / ".join(f"{pages[k]['opening_the_page']['server_cpu_ms_per_message']:.0f} ms"
                           for k in ("digits", "text", "mood")))
        if all("browser_cpu_ms" in pages[k] for k in ("digits", "text", "mood")):
            names = {"digits": "stroke", "text": "typing a phrase", "mood": "photo"}
            row("CPU ms per action, one visitor: the visitor's browser / the server",
                ", ".join(f"{names[k]} {pages[k]['browser_cpu_ms']} / {pages[k]['server_cpu_ms']}" for k in names)
                + "; opening " + ", ".join(f"{k} {pages[k]['opening_the_page']['browser_cpu_ms']} / "
                                           f"{pages[k]['opening_the_page']['server_cpu_ms']}" for k in names))
        tab = pages["training_idle_tab"]
        if "net_server_cpu_ms_per_message" in tab:
            run = (tab.get("tick_script_run") or {}).get("cpu", {})
            row("Training tick net of the server's background with no tab open",
                f"{tab['net_server_cpu_ms_per_message']:.0f} ms (background with no tab: "
                f"{tab['no_tab_share_of_one_core']:.2%} of a core)"
                + (f"; the tick's own script run at the server: {run['p50_ms']:.0f} ms of CPU (median of {run['n']}, "
                   "its thread's time: exact, where the figure before is a difference of two noisy ones)"
                   if run.get("n") else ""))
        row("an idle open Training tab, share of one core (before -> now)",
            f"{IDLE_TRAINING_TAB_BEFORE:.0%} -> {tab['share_of_one_core']:.1%}")
    rows = lo.get("visitors", []) + [lo[k] | {"kind": k} for k in ("with_training_job", "stress") if lo.get(k)]
    for r in rows:
        label = f"load: {r['visitors']} visitors" + {"with_training_job": " + a training job",
                                                     "stress": ", stress (all at once, no pause)"}.get(r.get("kind"), "")
        timings = "; ".join(f"{k} p50 {v['p50_ms'] / 1000:.2f} s, p95 {v['p95_ms'] / 1000:.2f} s, max {v['max_ms'] / 1000:.2f} s"
                            for k, v in r["actions"].items() if v.get("n"))
        later = r.get("actions_after_first_visit", {}).get("digits", {})
        steady = (f" (digits after the first visit: p50 {later['p50_ms'] / 1000:.2f} s, p95 {later['p95_ms'] / 1000:.2f} s)"
                  if later.get("n") else "")
        trip = r.get("digits_server_round_trip", {})
        steady += (f"; a stroke's websocket round trip (its message out to the run's end back, as the page sees it): "
                   f"p50 {trip['p50_ms'] / 1000:.2f} s, p95 {trip['p95_ms'] / 1000:.2f} s" if trip.get("n") else "")
        runs_at = r.get("script_runs_at_server", {})
        steady += ("; the server's part, each script run there (p50 / p95): " + ", ".join(
            f"{name} {runs_at[k]['p50_ms']:.0f} / {runs_at[k]['p95_ms']:.0f} ms"
            for k, name in (("fragment", "strokes and keys"), ("page", "photos and pages opened")) if runs_at[k].get("n"))
            if runs_at.get("fragment", {}).get("n") else "")
        row(label, f"{timings}{steady}; {r['errors']} errors; server RSS peak {r['server_rss_peak_mb']:.0f} MB, "
                   f"{r['server_cpu_ms_per_message']:.0f} ms CPU per interaction, server {r['server_cpu_share_of_machine']:.0%} "
                   f"/ browsers {r['browsers_cpu_share_of_machine']:.0%} of the machine; at this pace one server core "
                   f"would serve {r['visitors_per_server_core']:.0f} such visitors"
                   + (f"; CPU per action shown, page changes and typing included: browsers {r['browsers_cpu_ms_per_action']} "
                      f"ms, server {r['server_cpu_ms_per_action']} ms" if "browsers_cpu_ms_per_action" in r else ""))
    if lo.get("chromium"):
        row("load: how it was run", f"{lo['chromium']}; each visitor {lo.get('visitor', '')}; in-page times from the "
            "visitor's event to the first frame showing the result (a stroke is sent at pen-up: the page presses the "
            "canvas's own send button rather than wait out its 200 ms debounce; a mood result counts once the photo "
            "with its boxes has loaded)")
    if m := lo.get("sessions_memory"):
        row(f"load: {m['sessions']} sessions opened and closed, server RSS",
            f"{m['rss_before_mb']:.0f} MB -> {m['rss_after_mb']:.0f} MB ({m['growth']:+.1%}), {m['failures']} failures")


def _rates(d: dict, unit: str) -> str:
    return f"{d['default']:.0f} / {d['baseline']:.0f} {unit}"


def _lat(d: dict) -> str:
    return f"median {d['median_ms']:.1f} ms, p95 {d['p95_ms']:.1f} ms"


def quote_in_readme(table: str) -> None:
    """Replace the table between the README's bench markers."""
    readme = core.ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    start, end = "<!-- bench:start -->\n", "<!-- bench:end -->"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        readme.write_text(head + start + table + rest[rest.index(end):], encoding="utf-8")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", help="folder with mnist.npz, fer2013.npz, text/ (default: $DATA_DIR)")
    parser.add_argument("--only", default="digits,text,mood,app,quality")
    args = parser.parse_args(argv)
    if core.data_dir(args.data_dir) is None:
        raise SystemExit("error: set DATA_DIR (or --data-dir) to the folder with mnist.npz, fer2013.npz and text/")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "results.json"
    results = read_results()
    results["machine"] = machine()
    steps = {"digits": lambda: bench_digits(args.data_dir), "text": lambda: bench_text(args.data_dir),
             "mood": lambda: bench_mood(args.data_dir), "app": bench_app,
             "quality": lambda: quality.run(args.data_dir)}
    for name in args.only.split(","):
        print(f"== {name}", flush=True)
        results[name] = {**steps[name](), "machine": machine()}
        print(json.dumps(results[name], indent=1, default=str)[:3000], flush=True)
        core.write_json(path, results)
    table = markdown(results)
    (RESULTS / "results.md").write_text(table, encoding="utf-8")
    quote_in_readme(table)
    print(table)
    print(f"peak memory of this benchmark process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
