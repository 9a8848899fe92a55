"""Iris species from four flower measurements: a random forest trained on every CSV under the dataset.

Every pipeline kind works with it: training (train, save), evaluation (evaluate: the accuracy on the
data is the score) and full pipelines (process_data splits the input into training and test folders,
stratified by species, then train, evaluate on the test split, save).

Environment variables (all optional):
  n_estimators         trees in the forest (default 100)
  test_fraction        the share of rows process_data puts in the test folder (default 0.3)
  artifacts_directory  where metrics.json and confusion_matrix.csv go (default "artifacts")
"""
import csv
import json
import math
import os

import joblib
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, confusion_matrix
from sklearn.model_selection import train_test_split

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
LABEL = "species"
MODEL_FILE = "model.joblib"
# Fixed so that the same data and settings give the same model and the same numbers, run after run.
RANDOM_STATE = 0
HELD_OUT = 0.2


def read_rows(directory):
    """Every CSV under directory, subfolders included, in a stable order; returns (X, y, files)."""
    X, y, files = [], [], []
    for root, dirs, names in os.walk(directory):
        dirs.sort()  # os.walk's order is the filesystem's; sorting keeps row order, and so the split, stable
        for name in sorted(names):
            if not name.lower().endswith(".csv"):
                continue
            path = os.path.join(root, name)
            rel = os.path.relpath(path, directory)
            n = 0
            with open(path, newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                missing = [c for c in FEATURES + [LABEL] if c not in (reader.fieldnames or [])]
                if missing:
                    raise ValueError("%s: missing column %s (it has: %s)" % (rel, ", ".join(missing), ", ".join(reader.fieldnames or [])))
                for row in reader:
                    try:
                        X.append([float(row[c]) for c in FEATURES])
                    except ValueError as e:
                        raise ValueError("%s line %d: %s" % (rel, reader.line_num, e)) from None
                    y.append(row[LABEL].strip())
                    n += 1
            files.append(rel)
            print("read %s: %d rows" % (rel, n))
    return X, y, files


def positive_int(name, default):
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError("%s must be a positive integer, got %r" % (name, raw))
    return value


def write_rows(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(FEATURES + [LABEL])
        w.writerows(rows)


class Main:
    def __init__(self):
        # An evaluation run starts from a trained package, so the model may already be here.
        self.model = joblib.load(MODEL_FILE) if os.path.exists(MODEL_FILE) else None

    def train(self, training_directory):
        n_estimators = positive_int("n_estimators", 100)
        X, y, files = read_rows(training_directory)
        if not X:
            raise ValueError("no CSV rows under the training directory (looked for *.csv in every subfolder)")
        classes = sorted(set(y))
        print("%d rows from %d files, classes: %s" % (len(X), len(files), ", ".join(classes)))
        if len(classes) < 2:
            raise ValueError("need at least two species to tell apart, found only %s" % classes[0])

        # A held-out split says how good the model is; the model kept is then refit on every row.
        # Stratified, so every species is in both halves, where the data is big enough for that.
        n_test = math.ceil(len(X) * HELD_OUT)
        stratify = min(n_test, len(X) - n_test) >= len(classes) and min(y.count(c) for c in classes) >= 2
        X_fit, X_test, y_fit, y_test = train_test_split(
            X, y, test_size=n_test, random_state=RANDOM_STATE, stratify=y if stratify else None)
        forest = RandomForestClassifier(n_estimators=n_estimators, random_state=RANDOM_STATE)
        forest.fit(X_fit, y_fit)
        predicted = forest.predict(X_test)
        accuracy = accuracy_score(y_test, predicted)
        print("held-out accuracy: %.4f (%d of %d rows, n_estimators=%d)" % (accuracy, int(round(accuracy * len(y_test))), len(y_test), n_estimators))

        artifacts = os.environ.get("artifacts_directory", "artifacts")
        os.makedirs(artifacts, exist_ok=True)
        matrix = confusion_matrix(y_test, predicted, labels=classes)
        with open(os.path.join(artifacts, "confusion_matrix.csv"), "w", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["actual\\predicted"] + classes)
            for label, counts in zip(classes, matrix):
                w.writerow([label] + [int(c) for c in counts])
        metrics = {
            "accuracy": accuracy,
            "rows": len(X),
            "train_rows": len(X_fit),
            "held_out_rows": len(X_test),
            "n_estimators": n_estimators,
            "classes": classes,
            "files": files,
            "feature_importances": dict(zip(FEATURES, (round(float(v), 4) for v in forest.feature_importances_))),
        }
        with open(os.path.join(artifacts, "metrics.json"), "w") as fh:
            json.dump(metrics, fh, indent=2)
        print("wrote %s and %s" % (os.path.join(artifacts, "metrics.json"), os.path.join(artifacts, "confusion_matrix.csv")))

        self.model = RandomForestClassifier(n_estimators=n_estimators, random_state=RANDOM_STATE).fit(X, y)
        print("final model fit on all %d rows" % len(X))

    def process_data(self, input_directory):
        """Splits the input into the training and test folders the agent gives (a full pipeline)."""
        fraction = float(os.environ.get("test_fraction", "0.3"))
        if not 0 < fraction < 1:
            raise ValueError("test_fraction must be between 0 and 1, got %r" % fraction)
        X, y, files = read_rows(input_directory)
        if not X:
            raise ValueError("no CSV rows under the input directory")
        X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=fraction, random_state=RANDOM_STATE, stratify=y)
        write_rows(os.path.join(os.environ["training_data_directory"], "train.csv"), [x + [l] for x, l in zip(X_train, y_train)])
        write_rows(os.path.join(os.environ["test_data_directory"], "test.csv"), [x + [l] for x, l in zip(X_test, y_test)])
        print("split %d rows from %d files: %d to train, %d to test" % (len(X), len(files), len(X_train), len(X_test)))

    def evaluate(self, evaluation_directory):
        if self.model is None:
            raise RuntimeError("no trained model: %s is not in the package; run a training pipeline first" % MODEL_FILE)
        X, y, _ = read_rows(evaluation_directory)
        if not X:
            raise ValueError("no CSV rows under the evaluation directory")
        accuracy = float(accuracy_score(y, self.model.predict(X)))
        print("accuracy on %d rows: %.4f" % (len(X), accuracy))
        return accuracy

    def save(self):
        # Next to the code: the package folder after save() becomes the new package version.
        joblib.dump(self.model, MODEL_FILE)
        print("saved %s" % MODEL_FILE)
