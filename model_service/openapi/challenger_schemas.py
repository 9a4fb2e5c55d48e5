"""The `challenger` of GET /stats and GET /stats?by= (CHALLENGER_DIR, challenger.py): the
challenger against the model that answers, on the rows both scored (comparison.py)."""

from model_service.openapi.builders import text

FIGURE_DIFFERENCE = {
    "description": "Challenger minus model, with its 95 % paired bootstrap interval",
    "oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/GroupFigure"}],
}

CHALLENGER_SCHEMAS = {
    "Challenger": {
        "description": text(
            """
            CHALLENGER_DIR's model against the model that answers, on exactly the rows of the
            window that both scored; null without a challenger
            """
        ),
        "type": "object",
        "required": [
            "version",
            "rows",
            "labelled",
            "decisions_changed",
            "model_metrics",
            "metrics",
            "differences",
            "paired_test",
        ],
        "additionalProperties": False,
        "properties": {
            "version": {"description": "The challenger's version", "type": "string"},
            "rows": {"description": "Rows both models scored", "type": "integer", "minimum": 0},
            "labelled": {"description": "Of those, with a true value", "type": "integer"},
            "decisions_changed": {
                "description": "Rows whose label the challenger would have answered otherwise "
                "(null for a regressor)",
                "type": ["integer", "null"],
            },
            "model_metrics": {
                "description": "The model's metrics on these rows (the keys of /stats's metrics)",
                "type": "object",
            },
            "metrics": {
                "description": "The challenger's metrics on the same rows, the same keys",
                "type": "object",
            },
            "differences": {
                "description": text(
                    """
                    For each metric with a paired interval (binary: accuracy, precision, recall,
                    f1, positive_rate, brier, log_loss, roc_auc; multiclass: accuracy, log_loss;
                    regression: mae, rmse, per target as <target>.mae): challenger minus model;
                    null with no labelled row
                    """
                ),
                "type": ["object", "null"],
                "additionalProperties": FIGURE_DIFFERENCE,
            },
            "paired_test": {
                "description": text(
                    """
                    Whether the two differ beyond chance on these rows: McNemar's exact test on
                    the decisions right or wrong (classifiers), Wilcoxon's signed-rank test on
                    the absolute errors (regressors)
                    """
                ),
                "type": ["object", "null"],
                "required": ["test", "on", "challenger_better", "model_better", "p_value"],
                "additionalProperties": False,
                "properties": {
                    "test": {"type": "string", "enum": ["mcnemar_exact", "wilcoxon_signed_rank"]},
                    "on": {"type": "string"},
                    "challenger_better": {"type": "integer", "minimum": 0},
                    "model_better": {"type": "integer", "minimum": 0},
                    "p_value": {"type": "number", "minimum": 0, "maximum": 1},
                },
            },
        },
    },
    "ChallengerGroups": {
        "description": text(
            """
            /stats?by= for both models on the rows both scored: each side's groups, spreads and
            rules, as /stats?by= reports them; null without a challenger
            """
        ),
        "type": "object",
        "required": ["version", "predictions", "model", "challenger"],
        "additionalProperties": False,
        "properties": {
            "version": {"description": "The challenger's version", "type": "string"},
            "predictions": {"description": "Rows both scored", "type": "integer", "minimum": 0},
            "model": {"$ref": "#/components/schemas/ChallengerSide"},
            "challenger": {"$ref": "#/components/schemas/ChallengerSide"},
        },
    },
    "ChallengerSide": {
        "type": "object",
        "required": ["labelled", "groups", "spreads", "rules"],
        "additionalProperties": False,
        "properties": {
            "labelled": {"type": "integer", "minimum": 0},
            "groups": {"$ref": "#/components/schemas/StatsGroups/properties/groups"},
            "spreads": {"$ref": "#/components/schemas/StatsGroups/properties/spreads"},
            "rules": {"$ref": "#/components/schemas/StatsGroups/properties/rules"},
        },
    },
}
