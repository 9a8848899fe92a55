"""Serving: Main.predict takes flower measurements and answers with the species.

Input, as a JSON string (or the same already parsed):
  {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
  or a list of such objects, or [5.1, 3.5, 1.4, 0.2], or a list of such lists.
Output, a JSON string: {"species": "setosa", "probabilities": {"setosa": 1.0, ...}} for one flower,
a list of those for a list.
"""
import json

import joblib

from train import FEATURES, MODEL_FILE


def as_row(item):
    if isinstance(item, dict):
        missing = [f for f in FEATURES if f not in item]
        if missing:
            raise ValueError("missing %s (expected %s)" % (", ".join(missing), ", ".join(FEATURES)))
        return [float(item[f]) for f in FEATURES]
    if isinstance(item, (list, tuple)) and len(item) == len(FEATURES):
        return [float(v) for v in item]
    raise ValueError("expected an object with %s, or a list of %d numbers" % (", ".join(FEATURES), len(FEATURES)))


class Main:
    def __init__(self):
        self.model = joblib.load(MODEL_FILE)

    def predict(self, input):
        data = json.loads(input) if isinstance(input, (str, bytes)) else input
        # One flower is an object or a flat list of numbers; anything else that is a list is many flowers.
        single = isinstance(data, dict) or (isinstance(data, list) and data and not isinstance(data[0], (dict, list)))
        rows = [as_row(data)] if single else [as_row(item) for item in data]
        if not rows:
            return "[]"
        answers = []
        for species, probs in zip(self.model.predict(rows), self.model.predict_proba(rows)):
            answers.append({
                "species": str(species),
                "probabilities": {str(c): round(float(p), 4) for c, p in zip(self.model.classes_, probs)},
            })
        return json.dumps(answers[0] if single else answers)
