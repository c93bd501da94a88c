"""Song suggestions for a mood, from a catalog CSV placed on the circumplex model of affect.

Every song has a valence (0 sad .. 1 happy) and an energy (0 calm .. 1 intense); every mood
has a target point in that plane. "Match my mood" aims at the mood's own point, "lift my
mood" at a point nearer the pleasant side. Songs are ranked by distance to the target, with
no artist twice in one list; a song whose mood tags fit counts as a little nearer.

    python -m pipelines.songs sad --mode lift
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import urllib.parse
from pathlib import Path

import pandas as pd

from pipelines import core

CATALOG = core.ASSETS_DIR / "songs.csv"
COLUMNS = ["title", "artist", "year", "genre", "valence", "energy", "tags"]
MAX_ROWS = 20_000

# (valence, energy) per FER2013 expression: Russell's circumplex, roughly.
MATCH = {"angry": (0.25, 0.88), "disgust": (0.25, 0.60), "fear": (0.25, 0.65), "happy": (0.85, 0.75),
         "sad": (0.20, 0.30), "surprise": (0.70, 0.80), "neutral": (0.55, 0.45)}
# Lift: calm things down where the mood is tense, warm things up where it is low.
LIFT = {"angry": (0.65, 0.40), "disgust": (0.75, 0.55), "fear": (0.70, 0.35), "happy": (0.92, 0.82),
        "sad": (0.65, 0.50), "surprise": (0.85, 0.70), "neutral": (0.85, 0.70)}
MODES = {"match": MATCH, "lift": LIFT}
# Tags that fit each (mode, mood): a tagged song counts as TAG_BONUS nearer the target.
TAGS = {
    "match": {"angry": {"angry", "intense"}, "disgust": {"angry", "dark"}, "fear": {"fearful", "anxious", "dark"},
              "happy": {"happy"}, "sad": {"sad", "heartbreak"}, "surprise": {"energetic", "upbeat", "dance"},
              "neutral": {"calm"}},
    "lift": {"angry": {"calm", "hopeful"}, "disgust": {"happy", "upbeat"}, "fear": {"calm", "hopeful"},
             "happy": {"happy", "dance"}, "sad": {"hopeful", "happy"}, "surprise": {"happy", "dance"},
             "neutral": {"happy", "upbeat"}},
}
TAG_BONUS = 0.08


class CatalogError(ValueError):
    """A catalog CSV that cannot be used; the message names the problem."""


def decode(data: bytes) -> str:
    """Text of a CSV file in UTF-8, UTF-8 with a BOM or cp1252 (what spreadsheets write)."""
    text = core.decode_text(data)
    if text is None:
        raise CatalogError("The file is not text in UTF-8 or Windows-1252: save it as 'CSV UTF-8' and upload it "
                           "again.")
    return text


def sniff_delimiter(text: str) -> str:
    """The column separator: comma, semicolon (European spreadsheets), tab or pipe."""
    try:
        return csv.Sniffer().sniff(text[:8192], delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def load_catalog(source=CATALOG) -> pd.DataFrame:
    """Read and validate a catalog from a path or bytes; CatalogError says what is wrong."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    text = decode(data)
    if not text.strip():
        raise CatalogError("The file is empty.")
    sep = sniff_delimiter(text)
    try:  # everything as text: messages quote what the file says, and validate() converts
        df = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, nrows=MAX_ROWS + 1,
                         skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error) as exc:
        raise CatalogError(f"Not a readable CSV file ({' '.join(str(exc).split())}).") from None
    return validate(df)


def validate(df: pd.DataFrame) -> pd.DataFrame:
    """The catalog with numeric valence and energy; CatalogError names the row, column and what was expected.
    Row numbers are the file's line numbers (the header is line 1)."""
    df = df.rename(columns=lambda c: str(c).strip().lower())
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        found = ", ".join(map(str, df.columns[:8]))
        raise CatalogError(f"Missing column(s): {', '.join(missing)}. Expected the columns {', '.join(COLUMNS)}; "
                           f"the file has: {found}.")
    if df.empty:
        raise CatalogError("The catalog has no songs.")
    if len(df) > MAX_ROWS:
        raise CatalogError(f"The catalog has more than {MAX_ROWS:,} rows.")
    df = df.copy()
    for col in ("valence", "energy"):
        raw = df[col].astype(str).str.strip()
        values = pd.to_numeric(raw.str.replace(",", ".", regex=False), errors="coerce")  # 0,5 from a spreadsheet
        bad = df.index[values.isna() | (values < 0) | (values > 1)]
        if len(bad):
            raise CatalogError(f"Row {bad[0] + 2}, column '{col}': expected a number between 0 and 1, "
                               f"found '{raw[bad[0]]}'.")
        df[col] = values.astype(float)
    for col in ("title", "artist"):
        empty = df.index[df[col].isna() | (df[col].astype(str).str.strip() == "")]
        if len(empty):
            raise CatalogError(f"Row {empty[0] + 2}, column '{col}': expected a name, found nothing.")
    df["tags"] = df["tags"].fillna("").astype(str)
    return df[COLUMNS].reset_index(drop=True)


def md(text) -> str:
    """Text that a markdown table shows as itself (a catalog may hold |, *, [, $ or <)."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~$])", r"\\\1", str(text))


def search_link(title: str, artist: str) -> str:
    query = urllib.parse.quote_plus(f"{title} {artist}")
    return f"https://www.youtube.com/results?search_query={query}"


def recommend(catalog: pd.DataFrame, mood: str, mode: str = "match", n: int = 8) -> pd.DataFrame:
    """The n songs nearest the mood's target (tags that fit count as nearer), one per artist,
    each with a search link."""
    if mood not in MATCH:
        raise ValueError(f"unknown mood {mood!r}; one of {', '.join(MATCH)}")
    valence, energy = MODES[mode][mood]
    distance = ((catalog.valence - valence) ** 2 + (catalog.energy - energy) ** 2) ** 0.5
    fits = catalog.tags.str.lower().str.split(";").apply(lambda tags: bool(TAGS[mode][mood] & set(tags)))
    ranked = catalog.assign(distance=distance, score=distance - TAG_BONUS * fits)
    ranked = ranked.sort_values(["score", "title"], kind="stable")
    ranked = ranked.drop_duplicates("artist").head(n)
    return ranked.assign(link=[search_link(t, a) for t, a in zip(ranked.title, ranked.artist)]).reset_index(drop=True)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m pipelines.songs", description="songs for a mood")
    parser.add_argument("mood", choices=list(MATCH))
    parser.add_argument("--mode", choices=list(MODES), default="match")
    parser.add_argument("--catalog", default=CATALOG)
    args = parser.parse_args(argv)
    print(recommend(load_catalog(args.catalog), args.mood, args.mode).to_string())


if __name__ == "__main__":
    main()
