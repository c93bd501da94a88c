"""Run inspection and comparison, shared by the Training page and `python -m pipelines.runs`.

Everything here reads the run store (pipelines/runs.py) and never needs Keras:
- `rows(task)`: one summary row per run for the run browser, cached per run on the
  mtime/size of its few files, so 200 runs cost ~200 stat calls when nothing changed;
- `curves(run)`: per-batch train metrics (raw and smoothed), per-epoch validation,
  learning rate and throughput, cached on metrics.jsonl's mtime/size;
- `compare(runs)`: final metrics and the settings that differ;
- name/note (meta.json), `delete` (never the source of the active version), `bundle` (zip);
- the model's mistakes, written at evaluation time (mistakes.json + mistakes.png) so a page
  only reads files: `write_image_mistakes` (digits, mood), `write_text_mistakes` (text).
"""

from __future__ import annotations

import io
import json
import math
import shutil
import zipfile
from pathlib import Path

from pipelines import core, runs

SMOOTHING = 0.8  # TensorBoard-style exponential smoothing of the per-batch train curves
MISTAKES_JSON, MISTAKES_PNG = "mistakes.json", "mistakes.png"
KEY_SETTINGS = ("arch", "epochs", "batch_size", "learning_rate", "data_fraction", "augment", "init_from")
_cache: dict[tuple, tuple] = {}  # (kind, path) -> (stamp, value)


# ---------------------------------------------------------------- cheap, cached reads


def stamp(*paths: Path) -> tuple:
    """(mtime_ns, size) of each file, None when missing: changes whenever a file is rewritten."""
    out = []
    for path in paths:
        try:
            st = path.stat()
            out.append((st.st_mtime_ns, st.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


def cached(kind: str, key: str, files: tuple, build):
    """build() once per change of `files` (kept per process: the page and the CLI share it)."""
    now = stamp(*files)
    hit = _cache.get((kind, key))
    if hit is not None and hit[0] == now:
        return hit[1]
    value = build()
    _cache[(kind, key)] = (now, value)
    return value


def meta(run: runs.Run) -> dict:
    """The name and note a person gave the run ({} when none)."""
    return core.read_json(run.dir / "meta.json", {}) or {}


def set_meta(run: runs.Run, name: str | None = None, note: str | None = None) -> dict:
    """Rename or annotate a run (one line name, free-text note); returns the new meta."""
    if not run.dir.is_dir():
        raise core.PromotionError(f"no run {run.id}")
    data = meta(run)
    if name is not None:
        data["name"] = " ".join(name.split())[:80]
    if note is not None:
        data["note"] = note.strip()[:2000]
    core.write_json(run.dir / "meta.json", data)
    return data


# ---------------------------------------------------------------- formatting (one function for every number)


def fmt(value: float | None, score_name: str) -> str:
    if value is None:
        return "?"
    return f"{value:.2%}" if score_name == "accuracy" else f"{value:.3f} bits/char"


def fmt_gap(gap: float, score_name: str) -> str:
    return f"{abs(gap) * 100:.2f} points" if score_name == "accuracy" else f"{abs(gap):.3f} bits/char"


def fmt_lr(value) -> str:
    """'3e-4'; '' where the run has none (an ensemble trains nothing)."""
    if isinstance(value, (int, float)) and value:
        return f"{value:.0e}".replace("e-0", "e-")
    return "" if value is None else str(value)


def score_text(card: dict) -> str:
    score = (card or {}).get("score") or {}
    return fmt(score["value"], score.get("name", "")) if "value" in score else ""


# ---------------------------------------------------------------- the registry seen from the runs


def registry_names(task: str) -> list[str]:
    return sorted(set(core.active_models(task)) | {task})


def lineage(task: str) -> dict[str, dict]:
    """run id -> {versions: [v2, ...], active: "text v3" or ""}: which runs became models."""
    def build():
        out: dict[str, dict] = {}
        for name in registry_names(task):
            for v in core.list_versions(name):
                run_id = v["card"].get("run")
                if run_id:
                    row = out.setdefault(run_id, {"versions": [], "active": ""})
                    version = f"{name} {v['version']}" if name != task else v["version"]
                    row["versions"].append(version)
                    if v["active"]:
                        row["active"] = version
        return out
    folder = core.registry_dir(task)
    files = tuple(p for n in registry_names(task) for p in (core.registry_dir(n) / "history.jsonl",
                                                           core.registry_dir(n) / core.ACTIVE))
    return cached("lineage", str(folder), files, build)


# ---------------------------------------------------------------- the run browser


def _row(run: runs.Run) -> dict:
    status, card, info = run.status(), run.card() or {}, meta(run)
    settings = run.settings()
    started, ended = status.get("started"), status.get("ended") or status.get("updated")
    epochs = len(runs.full_epochs(run.metrics() if card.get("history") is None else card["history"]))
    return {
        "run": run.id, "task": run.task, "status": status["state"], "name": info.get("name", ""),
        "note": info.get("note", ""), "arch": settings.get("arch", ""), "epochs": epochs,
        "of": settings.get("epochs"), "batch": settings.get("batch_size"),
        "lr": fmt_lr(settings.get("learning_rate")), "fine-tuned": bool(settings.get("init_from")),
        "score": score_text(card), "benchmark": (card.get("score") or {}).get("benchmark_name", ""),
        "minutes": round((ended - started) / 60, 1) if started and ended else None,
        "error": status.get("error", ""),
    }


def row(run: runs.Run) -> dict:
    """One run browser row, rebuilt only when one of its files changed."""
    files = tuple(run.dir / f for f in ("status.json", "card.json", "meta.json", "settings.json", "metrics.jsonl"))
    out = dict(cached("row", str(run.dir), files, lambda: _row(run)))
    if out["status"] in runs.ACTIVE_STATES:  # a job can die without writing: ask again
        out["status"] = run.status()["state"]
    return out


def rows(task: str | None = None) -> list[dict]:
    """Every run (of a task, or all), newest first, with whether it is or was a model version."""
    out = []
    for task_name in ([task] if task else runs.TASKS):
        made = lineage(task_name)
        for run in runs.list_runs(task_name):
            r = row(run)
            link = made.get(run.id, {})
            r["model"] = ("active " + link["active"]) if link.get("active") else \
                ("was " + ", ".join(link["versions"])) if link.get("versions") else ""
            out.append(r)
    return sorted(out, key=lambda r: r["run"], reverse=True)


def label(r: dict) -> str:
    """How a run is named in pickers and legends: its name when it has one, else its id."""
    return f"{r['name']} ({r['run']})" if r.get("name") else r["run"]


def find(run_id: str, task: str | None = None) -> runs.Run:
    """A run by id (or a unique prefix); a clear error otherwise."""
    found = [r for r in runs.list_runs(task) if r.id == run_id] or \
        [r for r in runs.list_runs(task) if r.id.startswith(run_id)]
    if len(found) != 1:
        raise core.PromotionError(f"no run {run_id!r}" if not found else
                                  f"{run_id!r} matches {len(found)} runs: give more of the id")
    return found[0]


# ---------------------------------------------------------------- curves


def smooth(values: list, weight: float = SMOOTHING) -> list:
    """Debiased exponential moving average (TensorBoard's smoothing); None stays None."""
    out, avg, n = [], 0.0, 0
    for v in values:
        if v is None or not math.isfinite(v):
            out.append(None)
            continue
        n += 1
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight ** n))
    return out


def metric_key(task: str) -> str:
    return "accuracy"  # every task logs accuracy (text: next character); its benchmark score is on the card


def _curves(run: runs.Run) -> dict:
    rows_ = run.metrics()
    batches = [r for r in rows_ if r.get("kind") == "batch"]
    epochs = [r for r in rows_ if r.get("kind") == "epoch"]
    steps = (run.status().get("steps") or max((r["step"] for r in batches), default=1)) or 1
    out = {"steps": steps, "smoothing": SMOOTHING,
           "batch_x": [r["epoch"] + r["step"] / steps for r in batches],
           # a validation point at its epoch's end, or where a Stop cut the epoch short
           "epoch_x": [r["epoch"] + runs.epoch_steps(r, steps) / steps for r in epochs],
           "lr": [r.get("learning_rate") for r in epochs], "samples_per_s": [r.get("samples_per_s") for r in epochs]}
    for key in ("loss", "accuracy"):
        raw = [r.get(key) for r in batches]
        out[f"train_{key}"], out[f"train_{key}_smooth"] = raw, smooth(raw)
        out[f"val_{key}"] = [r.get(f"val_{key}") for r in epochs]
    return out


def curves(run: runs.Run) -> dict:
    """The run's curves as lists, rebuilt only when metrics.jsonl changed.
    Batch rows are Keras' running averages within the epoch; x is in epochs (1.5 = half of epoch 2)."""
    return cached("curves", str(run.dir), (run.dir / "metrics.jsonl", run.dir / "status.json"), lambda: _curves(run))


# ---------------------------------------------------------------- compare


def final_metrics(run: runs.Run) -> dict:
    """The last validation epoch and the benchmark score, as numbers."""
    c, card = curves(run), run.card() or {}
    score = card.get("score") or {}
    last = lambda xs: next((x for x in reversed(xs) if x is not None), None)  # noqa: E731
    return {"run": run.id, "name": meta(run).get("name", ""), "status": run.state,
            "epochs": len(runs.full_epochs(run.metrics())),
            "val_loss": last(c["val_loss"]), "val_accuracy": last(c["val_accuracy"]),
            "best_val_accuracy": max((v for v in c["val_accuracy"] if v is not None), default=None),
            "score": score.get("value"), "score_name": score.get("name", ""),
            "samples_per_s": last(c["samples_per_s"])}


def settings_diff(settings: list[dict]) -> dict[str, list]:
    """Only the settings whose values differ between the runs: key -> one value per run."""
    keys = sorted({k for s in settings for k in s} - {"task", "args"})
    table = {k: [s.get(k) for s in settings] for k in keys}
    return {k: v for k, v in table.items() if len({json.dumps(x, sort_keys=True, default=str) for x in v}) > 1}


def compare(run_list: list[runs.Run]) -> dict:
    """{metrics: one row per run, diff: setting -> values, same: settings shared by all}."""
    settings = [r.settings() for r in run_list]
    diff = settings_diff(settings)
    same = {k: v for k, v in (settings[0] if settings else {}).items() if k not in diff and k not in ("task", "args")}
    return {"runs": [r.id for r in run_list], "metrics": [final_metrics(r) for r in run_list], "diff": diff,
            "same": same}


# ---------------------------------------------------------------- confusion matrix


def confusion(test: dict) -> dict | None:
    """Counts, row-normalised percentages and the per-class P/R/F1 table of a card's test metrics."""
    cm, labels = test.get("confusion_matrix"), test.get("labels")
    if not cm or not labels:
        return None
    totals = [max(sum(row_), 1) for row_ in cm]
    pct = [[100 * v / t for v in row_] for row_, t in zip(cm, totals)]
    per_class = [{"class": name, "support": sum(cm[i]), **{k: round(v, 3) for k, v in
                  (test.get("per_class", {}).get(name) or {}).items()}} for i, name in enumerate(labels)]
    return {"labels": labels, "counts": cm, "percent": pct, "per_class": per_class}


# ---------------------------------------------------------------- manage


def deletable(run: runs.Run) -> str | None:
    """Why the run cannot be deleted, or None."""
    if run.state in runs.ACTIVE_STATES:
        return f"run {run.id} is {run.state}: stop it first"
    link = lineage(run.task).get(run.id, {})
    if link.get("active"):
        return f"run {run.id} is the source of the active model ({link['active']}): roll back first"
    return None


def delete(run: runs.Run) -> None:
    """Remove a run folder for good; refused for a running run or the active model's source.
    Registry versions it made stay (they are copies)."""
    if why := deletable(run):
        raise core.PromotionError(f"not deleted: {why}")
    trash = run.dir.with_name(f".deleting-{run.id}")
    run.dir.rename(trash)  # one rename: the run disappears whole, then its files go
    shutil.rmtree(trash, ignore_errors=True)
    for kind in ("row", "curves"):
        _cache.pop((kind, str(run.dir)), None)


def bundle(run: runs.Run) -> bytes:
    """The model, its card and its vocabulary files as one zip."""
    files = [run.dir / "model.keras", run.dir / "card.json", *sorted(run.dir.glob("model.*.json"))]
    if not files[0].exists():
        raise core.ModelUnavailable(f"run {run.id} has no model.keras (it did not finish)")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:  # .keras is already compressed
        for f in files:
            if f.exists():
                z.write(f, f"{run.task}-{run.id}/{f.name}")
    return buf.getvalue()


# ---------------------------------------------------------------- mistakes, written at evaluation time


def write_image_mistakes(run_dir: Path, images, y_true, probs, labels: list[str], n: int = 24, cols: int = 6) -> list:
    """The most confident mistakes on the test images: mistakes.json (index, true, predicted,
    confidence) and mistakes.png, a grid whose tiles carry "true > predicted  confidence"."""
    import numpy as np

    probs = np.asarray(probs)
    pred, y_true = probs.argmax(1), np.asarray(y_true, int)
    wrong = np.flatnonzero(pred != y_true)
    wrong = wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")][:n]
    items = [{"index": int(i), "true": labels[y_true[i]], "predicted": labels[pred[i]],
              "confidence": float(probs[i, pred[i]])} for i in wrong]
    core.write_json(Path(run_dir) / MISTAKES_JSON, {"kind": "images", "n_wrong": int((pred != y_true).sum()),
                                                    "n": int(len(y_true)), "items": items})
    if items:
        _write_grid(Path(run_dir) / MISTAKES_PNG, np.asarray(images)[wrong], items, cols)
    return items


def _write_grid(path: Path, images, items: list, cols: int, size: int = 96, strip: int = 34) -> None:
    import cv2
    import numpy as np

    tiles = []
    for img, item in zip(images, items):
        img = np.asarray(img, np.float32).squeeze()
        img = (img * 255 if img.max(initial=0) <= 1.5 else img).clip(0, 255).astype(np.uint8)
        tile = np.full((size + strip, size), 255, np.uint8)
        tile[:size] = cv2.resize(img, (size, size), interpolation=cv2.INTER_NEAREST)
        for k, text in enumerate((f"{item['true'][:7]}>{item['predicted'][:7]}", f"{item['confidence']:.0%}")):
            cv2.putText(tile, text, (3, size + 14 + 15 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.4, 0, 1, cv2.LINE_AA)
        tiles.append(cv2.copyMakeBorder(tile, 2, 2, 2, 2, cv2.BORDER_CONSTANT, value=200))
    blank = np.full_like(tiles[0], 255)
    tiles += [blank] * (-len(tiles) % cols)
    grid = np.concatenate([np.concatenate(tiles[i:i + cols], 1) for i in range(0, len(tiles), cols)], 0)
    ok, png = cv2.imencode(".png", grid)
    if ok:
        tmp = path.with_name(f".{path.name}.tmp")  # written whole, then renamed: readers never see half
        tmp.write_bytes(png.tobytes())
        tmp.replace(path)


def write_text_mistakes(run_dir: Path, model, vocab: dict, held_ids, window: int = 40, n_lines: int = 4,
                        length: int = 110, prompts: int = 3) -> dict:
    """A few held-out lines with each character's surprise (bits) and sample completions."""
    import numpy as np

    from pipelines import text

    held_ids = np.asarray(held_ids)
    chars = vocab["chars"]
    lines = []
    span = len(held_ids) - window - length
    # Lines apart from one another: a short held-out text (a small corpus) gives fewer lines, not the same
    # characters shown again in the next line.
    n_lines = min(n_lines, 1 + span // length) if span >= 0 else 0
    for k in range(n_lines):
        start = window + (span * k) // max(n_lines - 1, 1)
        windows = np.stack([held_ids[start + i - window:start + i] for i in range(length)])
        probs = text.last_char_probs(model, windows)
        target = held_ids[start:start + length]
        bits = -np.log2(np.maximum(probs[np.arange(length), target], 1e-12))
        lines.append({"text": "".join(chars[i] for i in target), "bits": [round(float(b), 2) for b in bits]})
    completions = []
    try:  # sampling needs the default architecture's named layers
        lm = text.KerasLM(model, vocab, window)
        for k in range(prompts if span > 0 else 0):
            start = window + (span * (2 * k + 1)) // (2 * prompts)
            prompt = "".join(chars[i] for i in held_ids[start - window:start])
            completions.append({"prompt": prompt, "completion": text.generate(lm, vocab, prompt, 8, 0.6, seed=k)})
    except (ValueError, KeyError, AttributeError):
        pass
    out = {"kind": "text", "lines": lines, "completions": completions}
    core.write_json(Path(run_dir) / MISTAKES_JSON, out)
    return out


def mistakes(run: runs.Run) -> dict | None:
    return core.read_json(run.dir / MISTAKES_JSON)


def surprising(line: dict, top: int = 8) -> set[int]:
    """Positions of the `top` most surprising characters of a line."""
    bits = line.get("bits", [])
    return set(sorted(range(len(bits)), key=lambda i: -bits[i])[:top])


# ---------------------------------------------------------------- command line


def _table(items: list[dict], columns: list[str], width: int) -> str:
    """A plain text table cut to the terminal's width."""
    def cell(v):
        return "" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)

    cells = [[cell(r.get(c)) for c in columns] for r in items]
    widths = [min(max([len(c)] + [len(x[i]) for x in cells]), 28) for i, c in enumerate(columns)]
    fmt_row = lambda xs: "  ".join(x[:w].ljust(w) for x, w in zip(xs, widths)).rstrip()[:width]  # noqa: E731
    return "\n".join([fmt_row(columns), fmt_row(["-" * w for w in widths])] + [fmt_row(x) for x in cells])


def _show(run: runs.Run) -> dict:
    return {**row(run), "settings": run.settings(), "final": final_metrics(run),
            "card": {k: v for k, v in (run.card() or {}).items() if k not in ("history", "test")},
            "test": {k: v for k, v in ((run.card() or {}).get("test") or {}).items() if k != "confusion_matrix"}}


def main(argv=None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pipelines.runs", description="The run store from a terminal.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("list", help="every run, newest first")
    ls.add_argument("--task", choices=runs.TASKS)
    sub.add_parser("show", help="one run: settings, final metrics, card").add_argument("run")
    sub.add_parser("compare", help="final metrics and the settings that differ").add_argument("run", nargs="+")
    sub.add_parser("delete", help="delete a run (never the active model's source)").add_argument("run")
    for p in sub.choices.values():
        p.add_argument("--json", action="store_true", help="the same data as JSON")
    args = parser.parse_args(argv)
    width = shutil.get_terminal_size((120, 24)).columns
    if args.cmd == "list":
        data = rows(args.task)
        print(json.dumps(data, indent=1) if args.json else _table(
            data, ["run", "task", "status", "name", "epochs", "lr", "score", "minutes", "model"], width)
            if data else "No runs yet.")
    elif args.cmd == "show":
        data = _show(find(args.run))
        print(json.dumps(data, indent=1, default=str) if args.json else "\n".join(
            f"{k:>10}: {json.dumps(v, default=str) if isinstance(v, dict) else v}"[:width * 3]
            for k, v in data.items()))
    elif args.cmd == "compare":
        data = compare([find(r) for r in args.run])
        if args.json:
            print(json.dumps(data, indent=1, default=str))
        else:
            print(_table(data["metrics"], ["run", "name", "status", "epochs", "val_loss", "val_accuracy",
                                           "score_name", "score"], width))
            diff = [{"setting": k, **{r: v for r, v in zip(data["runs"], vals)}} for k, vals in data["diff"].items()]
            print("\nsettings that differ:\n" + (_table(diff, ["setting", *data["runs"]], width) if diff else "none"))
    elif args.cmd == "delete":
        run = find(args.run)
        delete(run)
        print(json.dumps({"deleted": run.id}) if args.json else f"deleted run {run.task}/{run.id}")


if __name__ == "__main__":
    core.run_cli(main)
