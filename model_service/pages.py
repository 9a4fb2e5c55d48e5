"""Two web pages for people rather than programs: "try the model" at / and the dashboard at
/monitor.

The form of / is built from the loaded model: one field per column, of the kind its
training dtype calls for, with the categories its encoders learned when they saw the
column as it is sent. It speaks the model's contract (contract.py, api.toml), as any client
would: it posts to the contract's predict route, in its body shape (the features nested in
the observation field, or next to the id), with a new random id of the contract's type (an
id field that is a model column takes the form's value). The answer is shown as the
model's task gives it (tasks.py), from what the contract's answer holds: a decision with
its probability (binary), a label with the probability of every class (multiclass), or
the number of each target (regression). So the page follows any model and any brief
swapped in by their files.

Both pages are plain HTML (templates/), CSS and JavaScript (static/), served by the app
itself. Their Content-Security-Policy lets them load nothing from another origin, and run
no inline script or style. The JSON API is untouched: its answers, errors included, stay
JSON; these pages call it from the browser like any other client.
"""

from dataclasses import dataclass, field

import numpy as np
from flask import Blueprint, current_app, render_template
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

from model_service.tasks import json_key

pages = Blueprint("pages", __name__)

# Only the app's own origin, for everything; no plugins, no framing, no <base> tricks.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; "
    "object-src 'none'"
)
# Past this many categories a <select> is no help: free text, with the categories offered.
MAX_CHOICES = 100


@pages.get("/")
def try_the_model():
    model = current_app.config["MODEL"]
    return render_template(
        "try.html",
        model=model,
        task=answer_shape(model.task),
        fields=form_fields(model),
        contract=contract_shape(model),
    )


@pages.get("/monitor")
def monitor():
    return render_template("monitor.html", model=current_app.config["MODEL"])


@pages.after_request
def allow_only_this_origin(response):
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def answer_shape(task):
    """What try.js needs to show an answer of this task, embedded in the page as JSON.

    Each class goes with its name, as the service writes it (the keys of a multiclass
    answer's probabilities): JavaScript would write the class 1.0 as "1", not "1.0".
    """
    shape = {**task.describe(), "truth_field": task.truth_field}
    if hasattr(task, "classes"):
        shape["names"] = [json_key(label) for label in task.classes]
    if shape["task"] == "binary":
        shape["positive_name"] = json_key(task.positive_class)
        shape["negative_name"] = json_key(task.negative_class)
    return shape


def contract_shape(model):
    """What try.html says and try.js sends of the contract: /health's contract block, and
    the id fields that are model columns (the form gives their values)."""
    described = model.contract.describe(model.task)
    predict = described["predict"]
    return {
        **described,
        "id_columns": [name for name in predict["id"] if name in model.columns],
        "id_words": id_words(predict, model.columns),
        "answer_words": {key: source_words(s, model.task) for key, s in predict["answer"].items()},
        "true_words": true_words(described["update"]["true"]),
    }


def id_words(predict, columns):
    """How the page sends the id, in words: "a new random id", or field by field."""
    if predict["id"] == ["id"] and predict["id_types"]["id"] != "string":
        return "a new random id"  # the tutorial's (an integer, though a string would do)
    said = []
    for name in predict["id"]:
        if name in columns:
            said.append(f"{name} (the form's value)")
        elif predict["id_types"][name] == "string":
            said.append(f"{name} (a new random string, try-…)")
        else:
            said.append(f"{name} (a new random integer)")
    return "its id " + " and ".join(said)


def source_words(source, task):
    """What an answer's key holds, in words, from its source (contract.py)."""
    where, _, name = source.partition(".")
    if where == "request":
        return f"the {name} sent"
    positive = json_key(getattr(task, "positive_class", ""))
    words = {
        "": "the whole prediction",
        "probability": f"the probability of class {positive}",
        "decision": f"the decision (true: class {positive})",
        "label": "the label (the class predicted)",
        "probabilities": "the probability of each class",
        "value": "the number predicted",
    }
    return words.get(name, f"the {name} predicted")


def true_words(true):
    """The field(s) of the true outcome: "true_class", or "weight for Weight, ..."."""
    if isinstance(true, str):
        return true
    return ", ".join(f"{field} for {target}" for target, field in true.items())


# ---------------------------------------------------------------------------------------
# The form, from the model
# ---------------------------------------------------------------------------------------


@dataclass
class FormField:
    """One input of the form: what try.html renders and try.js reads back."""

    column: str
    kind: str  # "integer", "float", "boolean" or "string": how try.js writes the value
    dtype: str
    may_be_missing: bool  # left empty, it sends null
    categories: list = field(default_factory=list)  # known values of a string column

    @property
    def widget(self):
        """The kind of input: "number", "yes-no", "select" or "text"."""
        if self.kind in ("integer", "float"):
            return "number"
        if self.kind == "boolean":
            return "yes-no"
        if self.categories and len(self.categories) <= MAX_CHOICES:
            return "select"
        return "text"

    @property
    def hint(self):
        kinds = {
            "integer": "a whole number",
            "float": "a number",
            "boolean": "yes or no",
            "string": "one of the known values" if self.widget == "select" else "text",
        }
        missing = "may be left empty" if self.may_be_missing else "required"
        return f"{kinds[self.kind]} ({self.dtype}), {missing}"


def form_fields(model):
    categories = known_categories(model.pipeline, model.columns)
    return [
        FormField(
            column=column,
            kind=model.kinds[column],
            dtype=str(model.dtypes[column]),
            # As app.validate_value: only integer and boolean columns refuse a missing value.
            may_be_missing=model.kinds[column] not in ("integer", "boolean"),
            categories=categories.get(column, []) if model.kinds[column] == "string" else [],
        )
        for column in model.columns
    ]


def known_categories(estimator, columns):
    """{column: [category, ...]} learned by the encoders that see these columns as sent.

    An encoder counts only if nothing before it changed the values (an imputer may only
    fill in gaps): after CabinDeck, which turns "C85" into "C", an encoder knows decks,
    not cabins, and that column keeps a free-text field.
    """
    if isinstance(estimator, Pipeline):
        return categories_after_imputers([step for _, step in estimator.steps], columns)
    if isinstance(estimator, ColumnTransformer):
        found = {}
        for _, transformer, selection in getattr(estimator, "transformers_", []):
            selected = selected_columns(selection, columns)
            if selected is not None:
                found.update(known_categories(transformer, selected))
        return found
    learned = getattr(estimator, "categories_", None)
    if not isinstance(estimator, OneHotEncoder | OrdinalEncoder) or learned is None:
        return {}
    if len(learned) != len(columns):  # columns chosen another way than a ColumnTransformer's
        return {}
    return {  # only strings: a gap (NaN, None) is what the form's empty choice sends
        column: [str(value) for value in values if isinstance(value, str)]
        for column, values in zip(columns, learned, strict=True)
    }


def categories_after_imputers(steps, columns):
    """The categories known by the first step that is not an imputer, if it knows any."""
    fill_values = set()
    for step in steps:
        if step is None or step == "passthrough":
            continue
        if isinstance(step, SimpleImputer):
            # Its fill value ("missing") is what it writes for a gap, not a value to pick:
            # the form's empty choice sends the gap itself.
            if step.strategy == "constant":
                fill_values.add(step.fill_value)
            continue
        found = known_categories(step, columns)
        return {
            column: [value for value in values if value not in fill_values]
            for column, values in found.items()
        }
    return {}


def selected_columns(selection, columns):
    """The column names a ColumnTransformer entry selects, or None when it cannot tell."""
    if isinstance(selection, str):
        return [selection]
    try:
        if isinstance(selection, slice):
            return list(columns)[selection]
        items = list(np.asarray(selection, dtype=object).ravel())
        if all(isinstance(item, str) for item in items):
            return items
        if all(isinstance(item, bool | np.bool_) for item in items):
            return [column for column, keep in zip(columns, items, strict=True) if keep]
        if all(isinstance(item, int | np.integer) for item in items):
            return [columns[index] for index in items]
    except (TypeError, ValueError, IndexError):  # a slice by name, a mask of another length
        pass
    return None


def init_app(app):
    app.register_blueprint(pages)
