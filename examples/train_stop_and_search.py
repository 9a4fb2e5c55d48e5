"""Train the stop-and-search example model, on synthetic searches (nothing is downloaded).

The stop-and-search capstone: the police want a service that says whether a search should
be authorised, `POST /should_search/` answered `{"outcome": true}` when the likelihood that
the search succeeds (finds what it looks for) is above 10 %. Its quality is judged per
station and per object of search, and the success rates are compared between ethnicities.

No real data can be downloaded here, so this script *generates* searches shaped like the
police.uk open data, with a fixed seed: 6,000 searches over 2020-2022 in eight police
forces ("station"). A search succeeds about one time in four; how often depends on what is
searched for, under which law, at what hour and where, and a little on the officer-defined
ethnicity (searches of Black, Asian and Mixed people succeed less often here, as if made on
weaker grounds: something for the comparison between groups to find). And one story that
the later lessons rely on:

* in devon-and-cornwall searches succeed far less often than elsewhere (about 12 %, against
  about 30 %), and from October 2022 hardly ever (about 2 %): a change that no feature
  shows. The model learnt the old rate, so at the 10 % threshold it still authorises most
  searches there, which almost never succeed: on traffic.csv its precision is below 10 % at
  that station, and above 20 % at every other one. A model can be good on average and fail
  one group; only the outcomes, per station, show it.

The model never sees the 400 most recent searches: they are the held-out rows (the figures
in training_profile.json under "held_out") and traffic.csv, the requests to replay to the
service later (with their `observation_id` and their true `outcome`). Training on the past
and judging on what came after is how the service will be used.

Writes into examples/stop_and_search/ (or DIR/stop_and_search/ with --out DIR):
pipeline.pickle, columns.json, dtypes.pickle, training_profile.json and traffic.csv.
Running it again on the same machine writes the same bytes.

    .venv/bin/python examples/train_stop_and_search.py
    MODEL_DIR=examples/stop_and_search make run
"""

import argparse
import hashlib
import json
import pickle
import sys
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, precision_score, roc_auc_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

ROOT = Path(__file__).resolve().parent.parent  # the repository root: drift, custom_transformers
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from custom_transformers import DateParts  # noqa: E402
from model_service.monitoring import drift  # noqa: E402 (needs the repository root on sys.path)

SEED = 20240518
ROWS = 6000
TRAFFIC_ROWS = 400  # the most recent searches: never trained on
THRESHOLD = 0.1  # authorise a search when its likelihood of success is at least this
NAME = "stop_and_search"
HERE = Path(__file__).resolve().parent

# The brief's fields, in its order; observation_id is not a feature.
CATEGORICAL = [
    "Type",
    "Gender",
    "Age range",
    "Officer-defined ethnicity",
    "Legislation",
    "Object of search",
    "station",
]
COLUMNS = [
    "Type",
    "Date",
    "Part of a policing operation",
    "Latitude",
    "Longitude",
    "Gender",
    "Age range",
    "Officer-defined ethnicity",
    "Legislation",
    "Object of search",
    "station",
]

# ---------------------------------------------------------------------------------------
# What the searches look like: each field's values, their shares, their effect on success
# ---------------------------------------------------------------------------------------

# name: (share of the searches, effect, latitude and longitude of the force's main city).
# An effect is added to the log-odds of success.
STATIONS = {
    "metropolitan": (0.20, 0.10, 51.5074, -0.1278),
    "west-yorkshire": (0.11, 0.10, 53.8008, -1.5491),
    "merseyside": (0.10, 0.15, 53.4084, -2.9916),
    "thames-valley": (0.10, 0.00, 51.7520, -1.2577),
    "avon-and-somerset": (0.10, 0.05, 51.4545, -2.5879),
    "kent": (0.10, 0.00, 51.2704, 0.5227),
    "lancashire": (0.10, 0.10, 53.7632, -2.7031),
    "devon-and-cornwall": (0.19, -1.20, 50.7184, -3.5339),
}
LOW_STATION = "devon-and-cornwall"
LOW_STATION_CHANGE = "2022-10-01"  # from this day on, searches there succeed even less
LOW_STATION_LATER = -2.00  # added to its effect from that day

TYPES = {
    "Person search": (0.72, 0.0),
    "Person and Vehicle search": (0.18, 0.1),
    "Vehicle search": (0.10, -0.3),
}
GENDERS = {"Male": (0.88, 0.0), "Female": (0.10, -0.2), "Other": (0.02, 0.0)}
AGE_RANGES = {
    "under 10": (0.005, -0.5),
    "10-17": (0.15, -0.3),
    "18-24": (0.35, 0.0),
    "25-34": (0.28, 0.1),
    "over 34": (0.215, 0.1),
}
# Searches of Black, Asian and Mixed people succeed less often, as if made on weaker grounds.
# Modest on purpose: enough for a comparison between groups to show something.
ETHNICITIES = {
    "White": (0.62, 0.0),
    "Black": (0.16, -0.35),
    "Asian": (0.12, -0.2),
    "Mixed": (0.05, -0.25),
    "Other": (0.05, -0.1),
}
MISUSE_OF_DRUGS = "Misuse of Drugs Act 1971 (section 23)"
PACE = "Police and Criminal Evidence Act 1984 (section 1)"
SECTION_60 = "Criminal Justice and Public Order Act 1994 (section 60)"
FIREARMS_ACT = "Firearms Act 1968 (section 47)"
# Section 60 allows searches without suspicion in an area: they succeed far less often.
LEGISLATION_EFFECT = {MISUSE_OF_DRUGS: 0.0, PACE: 0.0, SECTION_60: -1.0, FIREARMS_ACT: -0.2}
# object: (share, effect, {legislation: share}): each object is searched under its laws.
OBJECTS = {
    "Controlled drugs": (0.58, 0.0, {MISUSE_OF_DRUGS: 0.97, PACE: 0.03}),
    "Offensive weapons": (0.15, -0.4, {PACE: 0.6, SECTION_60: 0.4}),
    "Stolen goods": (0.11, -0.1, {PACE: 1.0}),
    "Article for use in theft": (0.08, -0.5, {PACE: 1.0}),
    "Evidence of offences under the Act": (0.05, -0.3, {PACE: 0.5, MISUSE_OF_DRUGS: 0.5}),
    "Firearms": (0.03, -0.6, {FIREARMS_ACT: 0.7, SECTION_60: 0.3}),
}
# Searches by hour of the day: few before dawn, most in the evening.
HOUR_SHARES = np.array(
    [4, 3, 2.5, 2, 1.5, 1, 1, 1.5, 2, 3, 3.5, 4, 4.5, 5, 5.5, 6, 6.5, 7, 7, 7, 6.5, 6, 5.5, 5]
)
HOUR_EFFECT = 0.035  # per hour: later searches succeed more often (stronger grounds)
BASE_LOG_ODDS = -0.75  # about one search in four succeeds
OPERATION_SHARE = 0.12  # searches that are part of a policing operation
OPERATION_EFFECT = 0.2
# The share of each column left blank (Latitude takes Longitude with it).
MISSING_SHARES = {
    "Part of a policing operation": 0.2,
    "Age range": 0.05,
    "Officer-defined ethnicity": 0.06,
    "Latitude": 0.08,
}


# ---------------------------------------------------------------------------------------
# The synthetic searches
# ---------------------------------------------------------------------------------------


def choose(rng, table, size):
    """Draw `size` keys of `table` by their share (the first number of each value)."""
    names = list(table)
    shares = np.array([table[name][0] for name in names], dtype=float)
    return np.array(names, dtype=object)[rng.choice(len(names), size, p=shares / shares.sum())]


def effect(table, values, position=1):
    return np.array([table[value][position] for value in values])


def generate(rng, rows=ROWS):
    """Raw searches sorted by date, with missing values as in the open data."""
    station = choose(rng, STATIONS, rows)
    objects = choose(rng, OBJECTS, rows)
    legislation = np.array([law_for(rng, o) for o in objects], dtype=object)
    latitude = effect(STATIONS, station, 2) + rng.normal(0, 0.12, rows)
    longitude = effect(STATIONS, station, 3) + rng.normal(0, 0.18, rows)
    frame = pd.DataFrame(
        {
            "Type": choose(rng, TYPES, rows),
            "when": search_times(rng, rows),
            "Part of a policing operation": rng.random(rows) < OPERATION_SHARE,
            "Latitude": latitude.round(6),
            "Longitude": longitude.round(6),
            "Gender": choose(rng, GENDERS, rows),
            "Age range": choose(rng, AGE_RANGES, rows),
            "Officer-defined ethnicity": choose(rng, ETHNICITIES, rows),
            "Legislation": legislation,
            "Object of search": objects,
            "station": station,
        }
    )
    frame["outcome"] = rng.random(rows) < success_probability(frame)
    frame = frame.sort_values("when", kind="stable", ignore_index=True)
    return blank_out(rng, frame)


def law_for(rng, search_object):
    laws = OBJECTS[search_object][2]
    return list(laws)[rng.choice(len(laws), p=list(laws.values()))]


def search_times(rng, rows):
    """Local wall-clock times over 2020-2022, by the hourly pattern, to the minute."""
    days = rng.integers(0, (pd.Timestamp("2023-01-01") - pd.Timestamp("2020-01-01")).days, rows)
    hours = rng.choice(24, rows, p=HOUR_SHARES / HOUR_SHARES.sum())
    minutes = rng.integers(0, 60, rows)
    offsets = pd.to_timedelta(days, "D") + pd.to_timedelta(hours * 60 + minutes, "min")
    return pd.Timestamp("2020-01-01") + offsets


def success_probability(frame):
    """The true likelihood of success of each search: what the model tries to learn."""
    log_odds = (
        BASE_LOG_ODDS
        + effect(STATIONS, frame["station"])
        + effect(TYPES, frame["Type"])
        + effect(GENDERS, frame["Gender"])
        + effect(AGE_RANGES, frame["Age range"])
        + effect(ETHNICITIES, frame["Officer-defined ethnicity"])
        + effect(OBJECTS, frame["Object of search"])
        + np.array([LEGISLATION_EFFECT[law] for law in frame["Legislation"]])
        + HOUR_EFFECT * (frame["when"].dt.hour.to_numpy() - 12)
        + OPERATION_EFFECT * frame["Part of a policing operation"].to_numpy()
    )
    later = (frame["station"] == LOW_STATION) & (frame["when"] >= LOW_STATION_CHANGE)
    log_odds = log_odds + LOW_STATION_LATER * later.to_numpy()
    return 1 / (1 + np.exp(-log_odds))


def blank_out(rng, frame):
    """Some values missing, as in the open data (the outcome was drawn before)."""
    for column, share in MISSING_SHARES.items():
        missing = rng.random(len(frame)) < share
        frame[column] = frame[column].astype(object).where(~missing, None)
    frame["Longitude"] = frame["Longitude"].where(frame["Latitude"].notna())  # both or none
    return frame


# ---------------------------------------------------------------------------------------
# From raw searches to the model's features
# ---------------------------------------------------------------------------------------


def iso_8601(times):
    """Police.uk's format: local time with its offset, +01:00 in British Summer Time."""
    summer = np.array([is_british_summer_time(t) for t in times])
    text = times.dt.strftime("%Y-%m-%dT%H:%M:%S")
    return text + np.where(summer, "+01:00", "+00:00")


def is_british_summer_time(moment):
    """From 01:00 on the last Sunday of March to 01:00 on the last Sunday of October."""
    start, end = (last_sunday(moment.year, month) for month in (3, 10))
    return start <= moment < end


def last_sunday(year, month):
    last_day = pd.Timestamp(year, month, 31)
    return last_day - pd.Timedelta(days=(last_day.weekday() + 1) % 7, hours=-1)


def features_and_outcome(raw):
    """X with the dtypes the service validates against, y (booleans) and the ids."""
    X = raw.assign(Date=iso_8601(raw["when"]))[COLUMNS]
    # Not recorded means no operation: the column stays a boolean, which cannot be missing.
    X["Part of a policing operation"] = X["Part of a policing operation"].fillna(False)
    X = X.astype(
        {column: "str" for column in [*CATEGORICAL, "Date"]}  # pandas 3's str, as Titanic's
        | {"Latitude": "float64", "Longitude": "float64", "Part of a policing operation": "bool"}
    )
    ids = [f"{moment.year}-{i:06d}" for i, moment in enumerate(raw["when"], start=1)]
    return X, raw["outcome"].astype(bool), pd.Series(ids, name="observation_id")


# ---------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------


def build_pipeline():
    """Every transformation inside the pipeline: the service sends the raw fields."""
    date = make_pipeline(DateParts(), SimpleImputer(strategy="median"), StandardScaler())
    categories = make_pipeline(
        SimpleImputer(strategy="constant", fill_value="missing"),
        OneHotEncoder(handle_unknown="ignore"),
    )
    place = make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler())
    columns = ColumnTransformer(
        [
            ("date", date, ["Date"]),
            ("categories", categories, CATEGORICAL),
            ("place", place, ["Latitude", "Longitude"]),
            ("operation", "passthrough", ["Part of a policing operation"]),
        ]
    )
    return Pipeline([("columns", columns), ("model", LogisticRegression(max_iter=1000))])


def held_out_scores(model, X, y):
    """The figures of the brief's decisions: authorise when the likelihood is >= THRESHOLD.

    >= as the service decides (model_service/tasks.py); with probabilities, "above" is the
    same thing. Precision is the share of the authorised searches that succeeded.
    """
    probability = model.predict_proba(X)[:, 1]
    authorised = probability >= THRESHOLD
    return {
        "rows": len(X),
        "threshold": THRESHOLD,
        "roc_auc": float(roc_auc_score(y, probability)),
        "accuracy": float(accuracy_score(y, authorised)),
        "precision": float(precision_score(y, authorised)),
    }


# ---------------------------------------------------------------------------------------
# Train and write
# ---------------------------------------------------------------------------------------


def write_artifacts(folder, pipeline, X, held_out, traffic):
    """What the service loads, as notebook 1 writes it, and the traffic to replay."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "columns.json").write_text(json.dumps(list(X.columns), indent=2) + "\n")
    with open(folder / "dtypes.pickle", "wb") as file:
        pickle.dump(X.dtypes, file)
    joblib.dump(pipeline, folder / "pipeline.pickle")
    model_version = hashlib.sha256((folder / "pipeline.pickle").read_bytes()).hexdigest()[:12]
    profile = drift.profile_training_data(X, model_version, held_out=held_out)
    (folder / drift.PROFILE_FILE).write_text(json.dumps(profile, indent=2) + "\n")
    traffic.to_csv(folder / "traffic.csv", index=False)
    return model_version


def train(out_dir, seed=SEED):
    """Fit on the past, score on the 400 newest searches, write the artifacts."""
    X, y, ids = features_and_outcome(generate(np.random.default_rng(seed)))
    past = len(X) - TRAFFIC_ROWS  # the rows are sorted by date: the last ones are the newest
    pipeline = build_pipeline().fit(X.iloc[:past], y.iloc[:past])
    held_out = held_out_scores(pipeline, X.iloc[past:], y.iloc[past:])
    traffic = pd.concat([ids, X, y], axis=1).iloc[past:]
    folder = Path(out_dir) / NAME
    version = write_artifacts(folder, pipeline, X.iloc[:past], held_out, traffic)
    return folder, version, held_out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--out", type=Path, default=HERE, help=f"where to write {NAME}/ (default: examples/)"
    )
    args = parser.parse_args(argv)
    folder, version, held_out = train(args.out)
    print(f"wrote {folder} (model {version}), held out: {json.dumps(held_out)}")


if __name__ == "__main__":
    main()
