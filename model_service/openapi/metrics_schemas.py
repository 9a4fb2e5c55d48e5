"""The metrics of GET /stats, in the form of each task (a binary classifier's, a multiclass
classifier's, a regressor's of one number or of several), and a classifier's probability
bins (its calibration and its distribution).
"""

from model_service.openapi.builders import text

METRICS_SCHEMAS = {
    "Reason": {
        "description": "Why some metrics are null; null when none is",
        "type": ["string", "null"],
    },
    "ConfusionMatrix": {
        "description": text(
            """
            The labelled rows by true class (rows) and decided or predicted class (columns), both in
            the order of labels
            """
        ),
        "type": "object",
        "required": ["labels", "matrix"],
        "additionalProperties": False,
        "properties": {
            "labels": {
                "type": "array",
                "minItems": 2,
                "items": {"$ref": "#/components/schemas/ClassLabel"},
            },
            "matrix": {
                "type": "array",
                "items": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            },
        },
    },
    "BinaryMetrics": {
        "description": text(
            """
            A binary classifier's metrics, about its positive class. Each row is decided at the
            threshold and for the positive class stored with it (0.5 and classes[1] for the rows
            stored before those were recorded); a row stored for the other class counts with 1 -
            proba. Every number is null when no row is labelled.
            """
        ),
        "type": "object",
        "required": [
            "roc_auc",
            "accuracy",
            "log_loss",
            "brier",
            "precision",
            "recall",
            "f1",
            "positive_rate",
            "confusion_matrix",
            "thresholds",
            "reason",
        ],
        "additionalProperties": False,
        "properties": {
            "roc_auc": {
                "description": "Null also when the labelled rows are all of one class",
                "$ref": "#/components/schemas/OptionalNumber",
            },
            "accuracy": {"$ref": "#/components/schemas/OptionalNumber"},
            "log_loss": {"$ref": "#/components/schemas/OptionalNumber"},
            "brier": {"$ref": "#/components/schemas/OptionalNumber"},
            "precision": {
                "description": "Null also when no labelled row is decided positive",
                "$ref": "#/components/schemas/OptionalNumber",
            },
            "recall": {
                "description": "Null also when no labelled row is of the positive class",
                "$ref": "#/components/schemas/OptionalNumber",
            },
            "f1": {
                "description": (
                    "Null also when no labelled row is of the positive class or decided so"
                ),
                "$ref": "#/components/schemas/OptionalNumber",
            },
            "positive_rate": {
                "description": "The share of the labelled rows decided positive",
                "type": ["number", "null"],
                "minimum": 0,
                "maximum": 1,
            },
            "confusion_matrix": {
                "description": "labels is [negative class, positive class]; the matrix is 2 by 2",
                "allOf": [{"$ref": "#/components/schemas/ConfusionMatrix"}],
                "properties": {"labels": {"maxItems": 2}},
            },
            "roc_auc_error_bound": {
                "description": text(
                    """
                    Present when the window holds more than 100,000 labelled rows: roc_auc then
                    comes from fine score bins (monitoring/quality_cells.py), and differs from
                    scikit-learn's on the rows by at most this (0 when exact, at most 0.001)
                    """
                ),
                "type": ["number", "null"],
                "minimum": 0,
                "maximum": 0.001,
            },
            "thresholds": {
                "description": "The thresholds the labelled rows were decided at, smallest first",
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["threshold", "labelled"],
                    "additionalProperties": False,
                    "properties": {
                        "threshold": {"type": "number", "minimum": 0, "maximum": 1},
                        "labelled": {
                            "description": "The labelled rows decided at it",
                            "type": "integer",
                            "minimum": 1,
                        },
                    },
                },
            },
            "reason": {"$ref": "#/components/schemas/Reason"},
        },
    },
    "MulticlassMetrics": {
        "description": text(
            """
            A multiclass classifier's metrics: the predicted class is the stored label. Every number
            is null when no row is labelled.
            """
        ),
        "type": "object",
        "required": ["accuracy", "macro_f1", "log_loss", "confusion_matrix", "per_class", "reason"],
        "additionalProperties": False,
        "properties": {
            "accuracy": {"$ref": "#/components/schemas/OptionalNumber"},
            "macro_f1": {
                "description": "The mean F1 over the classes that occur, true or predicted",
                "$ref": "#/components/schemas/OptionalNumber",
            },
            "log_loss": {
                "description": "Over every class of the model",
                "$ref": "#/components/schemas/OptionalNumber",
            },
            "confusion_matrix": {
                "description": "labels is the model's classes, in its order",
                "$ref": "#/components/schemas/ConfusionMatrix",
            },
            "per_class": {
                "description": "One entry per class, in the model's order",
                "type": "array",
                "items": {
                    "type": "object",
                    "required": [
                        "class",
                        "true",
                        "predicted",
                        "predicted_all",
                        "precision",
                        "recall",
                        "f1",
                    ],
                    "additionalProperties": False,
                    "properties": {
                        "class": {"$ref": "#/components/schemas/ClassLabel"},
                        "true": {
                            "description": "Labelled rows of this true class",
                            "type": "integer",
                            "minimum": 0,
                        },
                        "predicted": {
                            "description": "Labelled rows predicted this class",
                            "type": "integer",
                            "minimum": 0,
                        },
                        "predicted_all": {
                            "description": (
                                "Rows of the window predicted this class, labelled or not"
                            ),
                            "type": "integer",
                            "minimum": 0,
                        },
                        "precision": {
                            "description": "Null when no labelled row is predicted this class",
                            "$ref": "#/components/schemas/OptionalNumber",
                        },
                        "recall": {
                            "description": "Null when no labelled row is of this class",
                            "$ref": "#/components/schemas/OptionalNumber",
                        },
                        "f1": {
                            "description": (
                                "Null when no labelled row is of this class or predicted so"
                            ),
                            "$ref": "#/components/schemas/OptionalNumber",
                        },
                    },
                },
            },
            "reason": {"$ref": "#/components/schemas/Reason"},
        },
    },
    "RegressionTargetMetrics": {
        "description": text(
            """
            A regressor's metrics for one number, over the labelled rows; all null when no row is
            labelled
            """
        ),
        "type": "object",
        "required": ["mae", "rmse", "r2", "errors"],
        "properties": {
            "mae": {"$ref": "#/components/schemas/OptionalNumber"},
            "rmse": {"$ref": "#/components/schemas/OptionalNumber"},
            "r2": {
                "description": "Null also on one row, or when every true value is the same",
                "$ref": "#/components/schemas/OptionalNumber",
            },
            "errors": {
                "description": "The errors, prediction - truth; null when no row is labelled",
                "oneOf": [{"$ref": "#/components/schemas/RegressionErrors"}, {"type": "null"}],
            },
        },
    },
    "RegressionErrors": {
        "description": text(
            """
            The errors of every labelled row; past 100,000 labelled rows in the window, the
            quantiles and bins are those of the latest labelled rows (from_latest_rows)
            """
        ),
        "type": "object",
        "required": ["mean", "quantiles", "bins"],
        "additionalProperties": False,
        "properties": {
            "mean": {"description": "Over every labelled row", "type": "number"},
            "from_latest_rows": {
                "description": text(
                    """
                    Only past 100,000 labelled rows in the window, when the other figures come
                    from sums: the quantiles and bins are those of this many labelled rows, the
                    latest predictions of the window (the mean is still over every one)
                    """
                ),
                "type": "integer",
                "minimum": 1,
            },
            "quantiles": {
                "description": "The quantiles 0, 0.05, 0.25, 0.5, 0.75, 0.95 and 1",
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["q", "value"],
                    "additionalProperties": False,
                    "properties": {
                        "q": {"type": "number", "minimum": 0, "maximum": 1},
                        "value": {"type": "number"},
                    },
                },
            },
            "bins": {
                "description": text(
                    """
                    10 equal-width bins from the smallest error to the largest (numpy.histogram):
                    each [low, high), the last [low, high]
                    """
                ),
                "type": "array",
                "minItems": 10,
                "maxItems": 10,
                "items": {
                    "type": "object",
                    "required": ["low", "high", "count"],
                    "additionalProperties": False,
                    "properties": {
                        "low": {"type": "number"},
                        "high": {"type": "number"},
                        "count": {"type": "integer", "minimum": 0},
                    },
                },
            },
        },
    },
    "RegressionMetrics": {
        "description": "A regressor of one number (/health's model.targets is null or names one)",
        "allOf": [{"$ref": "#/components/schemas/RegressionTargetMetrics"}],
        "required": ["reason"],
        "properties": {"reason": {"$ref": "#/components/schemas/Reason"}},
        "unevaluatedProperties": False,
    },
    "RegressionTargetsMetrics": {
        "description": "A regressor of several numbers, one set of metrics per target",
        "type": "object",
        "required": ["targets", "reason"],
        "additionalProperties": False,
        "properties": {
            "targets": {
                "description": "One entry per target of model.task.targets",
                "type": "object",
                "minProperties": 2,
                "additionalProperties": {
                    "allOf": [{"$ref": "#/components/schemas/RegressionTargetMetrics"}],
                    "unevaluatedProperties": False,
                },
            },
            "reason": {"$ref": "#/components/schemas/Reason"},
        },
    },
    "ProbabilityBin": {
        "type": "object",
        "required": ["low", "high", "count"],
        "properties": {
            "low": {"type": "number", "minimum": 0, "maximum": 0.9},
            "high": {"type": "number", "minimum": 0.1, "maximum": 1},
            "count": {"type": "integer", "minimum": 0},
        },
    },
    "ProbabilityBins": {
        "description": "Rows per probability bin [k/10, (k+1)/10), 1 falling in the last one",
        "type": "array",
        "minItems": 10,
        "maxItems": 10,
        "items": {
            "allOf": [{"$ref": "#/components/schemas/ProbabilityBin"}],
            "unevaluatedProperties": False,
        },
    },
    "CalibrationBins": {
        "description": "The labelled rows per probability bin, with what happened to them",
        "type": "array",
        "minItems": 10,
        "maxItems": 10,
        "items": {
            "allOf": [{"$ref": "#/components/schemas/ProbabilityBin"}],
            "required": ["mean_proba", "observed_rate"],
            "properties": {
                "mean_proba": {
                    "description": "The mean probability of the bin's rows; null when it has none",
                    "type": ["number", "null"],
                    "minimum": 0,
                    "maximum": 1,
                },
                "observed_rate": {
                    "description": text(
                        """
                        The share of the bin's rows whose true class is the positive one (binary),
                        or whose predicted class was right (multiclass); null when it has none
                        """
                    ),
                    "type": ["number", "null"],
                    "minimum": 0,
                    "maximum": 1,
                },
            },
            "unevaluatedProperties": False,
        },
    },
}
