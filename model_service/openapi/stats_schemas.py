"""GET /stats's answer: the reported version's rows in the window (Stats), the model served
and the version reported (StatsModel, TaskDescription), the versions that stored rows
(StatsVersion), the drift of each column. Each task's metrics and probability bins are in
metrics_schemas.py, the answer of GET /stats?by= in groups_schemas.py.
"""

from model_service.openapi.builders import text

STATS_SCHEMAS = {
    "Stats": {
        "description": text(
            """
            The reported version's rows in the window, judged by the task of the model served now
            (model.task.task): each task has its own form of metrics, calibration and distribution.
            """
        ),
        "type": "object",
        "required": [
            "model",
            "window",
            "versions",
            "predictions",
            "labelled",
            "labelled_left_out",
            "metrics",
            "calibration",
            "distribution",
            "drift",
            "drift_note",
            "unreadable_observations",
            "replaced",
            "daily",
            "challenger",
        ],
        "additionalProperties": False,
        "properties": {
            "daily": {
                "description": text(
                    """
                    Each day (UTC) of the window with rows: the rows stored, the labelled rows
                    the task read, and its main metric with its 95 % interval (a classifier's
                    accuracy, Wilson's; a regressor's MAE of its first target, normal), null
                    without labelled rows: what /monitor's chart of quality over time draws
                    """
                ),
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["day", "predictions", "labelled", "metric"],
                    "additionalProperties": False,
                    "properties": {
                        "day": {"type": "string", "format": "date"},
                        "predictions": {"type": "integer", "minimum": 0},
                        "labelled": {"type": "integer", "minimum": 0},
                        "metric": {
                            "type": ["object", "null"],
                            "required": ["name", "value", "low", "high"],
                            "properties": {
                                "name": {"type": "string", "enum": ["accuracy", "mae"]},
                                "value": {"type": "number"},
                                "low": {"type": "number"},
                                "high": {"type": "number"},
                            },
                        },
                    },
                },
            },
            "model": {"$ref": "#/components/schemas/StatsModel"},
            "challenger": {
                "oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/Challenger"}]
            },
            "window": {
                "type": "object",
                "required": ["since", "until"],
                "additionalProperties": False,
                "properties": {
                    "since": {
                        "description": "The since parameter, in UTC; null without it",
                        "type": ["string", "null"],
                        "format": "date-time",
                    },
                    "until": {
                        "description": "The until parameter, in UTC; null without it",
                        "type": ["string", "null"],
                        "format": "date-time",
                    },
                },
            },
            "versions": {
                "description": text(
                    """
                    Every model version with rows in the window (whichever is reported), the most
                    recently used first
                    """
                ),
                "type": "array",
                "items": {"$ref": "#/components/schemas/StatsVersion"},
            },
            "predictions": {
                "description": "Rows of the reported version stored in the window",
                "type": "integer",
                "minimum": 0,
            },
            "labelled": {
                "description": "Those of them with a true outcome (true_class or true_value)",
                "type": "integer",
                "minimum": 0,
            },
            "labelled_left_out": {
                "description": text(
                    """
                    Labelled rows left out of the metrics and the calibration because this model's
                    task cannot read their stored prediction or true outcome (rows of a model of
                    another kind, or with other classes)
                    """
                ),
                "type": "integer",
                "minimum": 0,
            },
            "metrics": {
                "description": text(
                    """
                    Over the labelled rows, with sklearn.metrics, in the form of the task; a metric
                    is null where it is undefined, and reason says why
                    """
                ),
                "oneOf": [
                    {"$ref": "#/components/schemas/BinaryMetrics"},
                    {"$ref": "#/components/schemas/MulticlassMetrics"},
                    {"$ref": "#/components/schemas/RegressionMetrics"},
                    {"$ref": "#/components/schemas/RegressionTargetsMetrics"},
                ],
            },
            "calibration": {
                "description": text(
                    """
                    Classifiers: the labelled rows in 10 equal-width probability bins (a binary
                    classifier's probability of its positive class; a multiclass classifier's top
                    probability, that of its predicted class). Regressors: null
                    """
                ),
                "oneOf": [{"$ref": "#/components/schemas/CalibrationBins"}, {"type": "null"}],
            },
            "distribution": {
                "description": text(
                    """
                    Classifiers: every row of the reported version in the window, in the same 10
                    probability bins. Regressors: null
                    """
                ),
                "oneOf": [{"$ref": "#/components/schemas/ProbabilityBins"}, {"type": "null"}],
            },
            "drift": {
                "description": (
                    "Per model column, its PSI and its bins; null when drift_note says why"
                ),
                "type": ["object", "null"],
                "additionalProperties": {
                    "type": "object",
                    "required": ["psi", "bins"],
                    "additionalProperties": False,
                    "properties": {
                        "psi": {"type": "number", "minimum": 0},
                        "bins": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["bin", "training", "window", "count"],
                                "additionalProperties": False,
                                "properties": {
                                    "bin": {"type": "string"},
                                    "training": {
                                        "description": "The share of the training rows in the bin",
                                        "type": "number",
                                    },
                                    "window": {
                                        "description": (
                                            "The share of the window's readable rows in the bin"
                                        ),
                                        "type": "number",
                                    },
                                    "count": {
                                        "description": "The window's readable rows in the bin",
                                        "type": "integer",
                                        "minimum": 0,
                                    },
                                },
                            },
                        },
                    },
                },
            },
            "drift_note": {
                "description": (
                    "Why drift is null (no profile, a profile of another model, no rows)"
                ),
                "type": ["string", "null"],
            },
            "unreadable_observations": {
                "description": (
                    "Stored rows whose observation this model cannot read; left out of drift"
                ),
                "type": "integer",
                "minimum": 0,
            },
            "replaced": {
                "description": (
                    'Rows with values answered as missing ([predict] invalid = "as_missing"): '
                    "how many, and how many had each field replaced"
                ),
                "type": "object",
                "required": ["rows", "by_field"],
                "additionalProperties": False,
                "properties": {
                    "rows": {"type": "integer", "minimum": 0},
                    "by_field": {
                        "type": "object",
                        "additionalProperties": {"type": "integer", "minimum": 1},
                    },
                },
            },
        },
        "oneOf": [
            {
                "description": "A binary classifier",
                "properties": {
                    "model": {
                        "properties": {"task": {"properties": {"task": {"const": "binary"}}}}
                    },
                    "metrics": {"$ref": "#/components/schemas/BinaryMetrics"},
                    "calibration": {"type": "array"},
                    "distribution": {"type": "array"},
                },
            },
            {
                "description": "A multiclass classifier",
                "properties": {
                    "model": {
                        "properties": {"task": {"properties": {"task": {"const": "multiclass"}}}}
                    },
                    "metrics": {"$ref": "#/components/schemas/MulticlassMetrics"},
                    "calibration": {"type": "array"},
                    "distribution": {"type": "array"},
                },
            },
            {
                "description": (
                    "A regressor (several targets answer one set of metrics per target)"
                ),
                "properties": {
                    "model": {
                        "properties": {"task": {"properties": {"task": {"const": "regression"}}}}
                    },
                    "metrics": {
                        "oneOf": [
                            {"$ref": "#/components/schemas/RegressionMetrics"},
                            {"$ref": "#/components/schemas/RegressionTargetsMetrics"},
                        ]
                    },
                    "calibration": {"type": "null"},
                    "distribution": {"type": "null"},
                },
            },
        ],
    },
    "StatsModel": {
        "description": "The model served now, and the version reported",
        "type": "object",
        "required": ["version", "reported_version", "task", "columns", "held_out"],
        "additionalProperties": False,
        "properties": {
            "version": {
                "description": "The model that answers now (/health's model.version)",
                "type": "string",
                "pattern": "^[0-9a-f]{12}$",
            },
            "reported_version": {
                "description": text(
                    """
                    The version whose rows are reported: the model_version parameter, else version
                    (`unknown`: the rows stored before the version was recorded)
                    """
                ),
                "type": "string",
            },
            "task": {"$ref": "#/components/schemas/TaskDescription"},
            "columns": {"type": "array", "items": {"type": "string"}},
            "held_out": {
                "description": text(
                    """
                    What notebook 1 measured on held-out rows (from the training profile of the
                    model served); null without a usable profile
                    """
                ),
                "type": ["object", "null"],
            },
        },
    },
    "TaskDescription": {
        "description": (
            "The task of the model served, and what shapes its answers (/health's model)"
        ),
        "oneOf": [
            {
                "type": "object",
                "required": ["task", "classes", "threshold", "positive_class"],
                "additionalProperties": False,
                "properties": {
                    "task": {"const": "binary"},
                    "classes": {
                        "description": "Its two classes, in the model's order (classes_)",
                        "type": "array",
                        "minItems": 2,
                        "maxItems": 2,
                        "items": {"$ref": "#/components/schemas/ClassLabel"},
                    },
                    "threshold": {
                        "description": "The decision is proba >= threshold (THRESHOLD)",
                        "type": "number",
                        "minimum": 0,
                        "maximum": 1,
                    },
                    "positive_class": {
                        "description": "The class proba is the probability of (POSITIVE_CLASS)",
                        "$ref": "#/components/schemas/ClassLabel",
                    },
                },
            },
            {
                "type": "object",
                "required": ["task", "classes"],
                "additionalProperties": False,
                "properties": {
                    "task": {"const": "multiclass"},
                    "classes": {
                        "description": "Its classes, in the model's order (classes_)",
                        "type": "array",
                        "minItems": 3,
                        "items": {"$ref": "#/components/schemas/ClassLabel"},
                    },
                },
            },
            {
                "type": "object",
                "required": ["task", "targets"],
                "additionalProperties": False,
                "properties": {
                    "task": {"const": "regression"},
                    "targets": {
                        "description": (
                            "The names of its numbers (targets.json), or null without the file"
                        ),
                        "type": ["array", "null"],
                        "minItems": 1,
                        "items": {"type": "string"},
                    },
                },
            },
        ],
    },
    "StatsVersion": {
        "description": "A model version's rows in the window",
        "type": "object",
        "required": [
            "version",
            "predictions",
            "labelled",
            "first_stored",
            "last_stored",
            "serving",
        ],
        "additionalProperties": False,
        "properties": {
            "version": {
                "description": (
                    "The model_version stored with the rows; `unknown` for those stored without"
                ),
                "type": "string",
            },
            "predictions": {"description": "Its rows", "type": "integer", "minimum": 1},
            "labelled": {
                "description": "Its rows with a true outcome",
                "type": "integer",
                "minimum": 0,
            },
            "first_stored": {
                "description": "When its first row in the window was stored, in UTC",
                "type": "string",
                "format": "date-time",
            },
            "last_stored": {
                "description": "When its last row in the window was stored, in UTC",
                "type": "string",
                "format": "date-time",
            },
            "serving": {"description": "Whether it is the model served now", "type": "boolean"},
        },
    },
}
