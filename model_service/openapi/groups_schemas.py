"""GET /stats?by=: each group's metrics with their intervals, the spreads between groups,
and the brief's rules (StatsGroups, GroupFigure, GroupEnd)."""

GROUPS_SCHEMAS = {
    "StatsGroups": {
        "type": "object",
        "required": [
            "model",
            "window",
            "by",
            "predictions",
            "labelled",
            "labelled_left_out",
            "min_labelled",
            "confidence",
            "metrics",
            "columns",
            "groups",
            "spreads",
            "rules",
            "challenger",
        ],
        "additionalProperties": False,
        "properties": {
            "model": {"$ref": "#/components/schemas/StatsModel"},
            "challenger": {
                "oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/ChallengerGroups"}]
            },
            "window": {
                "type": "object",
                "required": ["since", "until"],
                "properties": {
                    "since": {"type": ["string", "null"], "format": "date-time"},
                    "until": {"type": ["string", "null"], "format": "date-time"},
                },
            },
            "by": {"type": "array", "maxItems": 3, "items": {"type": "string"}},
            "predictions": {"type": "integer", "minimum": 0},
            "labelled": {"type": "integer", "minimum": 0},
            "labelled_left_out": {"type": "integer", "minimum": 0},
            "min_labelled": {"type": "integer", "minimum": 1},
            "confidence": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            "metrics": {"type": "array", "items": {"type": "string"}},
            "columns": {"type": "array", "items": {"type": "string"}},
            "groups": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["group", "predictions", "labelled", "metrics", "reason"],
                    "additionalProperties": False,
                    "properties": {
                        "group": {"type": "object", "additionalProperties": {"type": "string"}},
                        "predictions": {"type": "integer", "minimum": 0},
                        "labelled": {"type": "integer", "minimum": 0},
                        "metrics": {
                            "type": "object",
                            "additionalProperties": {
                                "anyOf": [
                                    {"$ref": "#/components/schemas/GroupFigure"},
                                    {"type": "null"},
                                ]
                            },
                        },
                        "reason": {"type": ["string", "null"]},
                    },
                },
            },
            "spreads": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "required": ["groups", "lowest", "highest", "difference", "ratio"],
                    "additionalProperties": False,
                    "properties": {
                        "groups": {"type": "integer", "minimum": 0},
                        "lowest": {
                            "anyOf": [{"$ref": "#/components/schemas/GroupEnd"}, {"type": "null"}]
                        },
                        "highest": {
                            "anyOf": [{"$ref": "#/components/schemas/GroupEnd"}, {"type": "null"}]
                        },
                        "difference": {
                            "anyOf": [
                                {"$ref": "#/components/schemas/GroupFigure"},
                                {"type": "null"},
                            ]
                        },
                        "ratio": {"type": ["number", "null"]},
                    },
                },
            },
            "rules": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": [
                        "name",
                        "metric",
                        "by",
                        "within",
                        "status",
                        "judged",
                        "failing",
                        "undecided",
                        "reason",
                    ],
                    "properties": {
                        "name": {"type": "string"},
                        "metric": {"type": "string"},
                        "by": {"type": "array", "items": {"type": "string"}},
                        "within": {"type": "array", "items": {"type": "string"}},
                        "at_least": {"type": "number"},
                        "at_most": {"type": "number"},
                        "spread_at_most": {"type": "number"},
                        "ratio_at_least": {"type": "number"},
                        "status": {"type": "string", "enum": ["met", "not_met", "undecided"]},
                        "judged": {"type": "integer", "minimum": 0},
                        "failing": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["beyond_noise"],
                                "properties": {"beyond_noise": {"type": "boolean"}},
                            },
                        },
                        "undecided": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["group", "labelled", "reason"],
                                "properties": {
                                    "group": {
                                        "type": "object",
                                        "additionalProperties": {"type": "string"},
                                    },
                                    "labelled": {"type": "integer", "minimum": 0},
                                    "reason": {"type": "string"},
                                },
                            },
                        },
                        "reason": {"type": ["string", "null"]},
                    },
                },
            },
        },
    },
    "GroupFigure": {
        "type": "object",
        "required": ["value", "low", "high"],
        "additionalProperties": False,
        "properties": {
            "value": {"type": "number"},
            "low": {"type": "number"},
            "high": {"type": "number"},
        },
    },
    "GroupEnd": {
        "type": "object",
        "required": ["group", "value"],
        "additionalProperties": False,
        "properties": {
            "group": {"type": "object", "additionalProperties": {"type": "string"}},
            "value": {"type": "number"},
        },
    },
}
