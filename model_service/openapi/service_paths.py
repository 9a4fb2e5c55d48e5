"""The routes every model shares, the same whatever the contract: /health,
/list-db-contents, /stats, /export and /metrics (the last four for the admin token), this document
(/openapi.yaml, /openapi.json), and the pages for people (/ and /monitor).

Their schemas are in schemas.py (Health, StoredPrediction: they depend on the model),
stats_schemas.py (Stats) and groups_schemas.py (StatsGroups).
"""

from model_service.openapi.builders import json_content, ref, text

SECURITY_SCHEMES = {
    "adminToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "The value of the ADMIN_TOKEN environment variable",
    }
}

# The window of stored rows that /stats and /export read: ?since= and ?until=.
TIME_WINDOW = [
    {
        "name": "since",
        "in": "query",
        "required": False,
        "description": (
            "Only rows stored at or after this time (ISO 8601; UTC unless it names a zone)"
        ),
        "schema": {"type": "string", "format": "date-time"},
    },
    {
        "name": "until",
        "in": "query",
        "required": False,
        "description": "Only rows stored before this time (ISO 8601; UTC unless it names a zone)",
        "schema": {"type": "string", "format": "date-time"},
    },
]
# The rows of one API key (API_KEYS), for /stats and /export: ?api_key_name=.
API_KEY_NAME = {
    "name": "api_key_name",
    "in": "query",
    "required": False,
    "description": (
        "Only the rows written with this API key: its name in API_KEYS (rows written while "
        "keys were off have none)"
    ),
    "schema": {"type": "string", "minLength": 1},
}

SERVICE_PATHS = {
    "/health": {
        "get": {
            "operationId": "health",
            "summary": (
                "Whether the service and its database work, and which model and versions run"
            ),
            "responses": {
                "200": {
                    "description": "The service and its database work",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Health"}}
                    },
                },
                "503": {
                    "description": (
                        "The database cannot be reached; the body also says which model runs"
                    ),
                    "content": {
                        "application/json": {
                            "schema": {
                                "allOf": [
                                    {"$ref": "#/components/schemas/Health"},
                                    {
                                        "type": "object",
                                        "required": ["error"],
                                        "properties": {
                                            "error": {"type": "string"},
                                            "status": {"const": "unavailable"},
                                        },
                                    },
                                ]
                            }
                        }
                    },
                },
            },
        }
    },
    "/list-db-contents": {
        "get": {
            "operationId": "listDbContents",
            "summary": "Stored predictions, newest first, one page at a time (admin only)",
            "description": text(
                """
                Answers only with `Authorization: Bearer <ADMIN_TOKEN>`; without it, or when
                ADMIN_TOKEN is not set, the route answers 404 as if it did not exist.
                """
            ),
            "security": [{"adminToken": []}],
            "parameters": [
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "description": "Rows per page",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                },
                {
                    "name": "before_id",
                    "in": "query",
                    "required": False,
                    "description": (
                        "Only rows with a smaller id (next_before_id of the previous page)"
                    ),
                    "schema": {
                        "type": "integer",
                        "format": "int64",
                        "minimum": -9223372036854775808,
                        "maximum": 9223372036854775807,
                    },
                },
            ],
            "responses": {
                "200": {
                    "description": "One page of stored rows",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["predictions", "next_before_id"],
                                "additionalProperties": False,
                                "properties": {
                                    "predictions": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/StoredPrediction"},
                                    },
                                    "next_before_id": {
                                        "description": (
                                            "Pass as before_id to get the next page; null on the "
                                            "last page"
                                        ),
                                        "type": ["integer", "null"],
                                    },
                                },
                            }
                        }
                    },
                },
                "404": {"$ref": "#/components/responses/NotFound"},
                "422": {"$ref": "#/components/responses/Invalid"},
                "503": {"$ref": "#/components/responses/DatabaseUnavailable"},
            },
        }
    },
    "/stats": {
        "get": {
            "operationId": "stats",
            "summary": (
                "Model quality, calibration and drift, from the stored predictions (admin only)"
            ),
            "description": text(
                """
                Computed from the stored rows when asked, for one model version (model_version): the
                metrics of its task over the rows whose true outcome arrived with /update (a binary
                or multiclass classifier's true_class, a regressor's true_value), the calibration
                and the distribution of a classifier's probabilities, the versions that stored rows
                in the window, and the drift of each feature against training_profile.json (written
                by notebook 1). The rows are read with the task of the model served now, whichever
                version is reported. Answers only with `Authorization: Bearer <ADMIN_TOKEN>`;
                without it, or when ADMIN_TOKEN is not set, the route answers 404.
                """
            ),
            "security": [{"adminToken": []}],
            "parameters": [
                *TIME_WINDOW,
                {
                    "name": "model_version",
                    "in": "query",
                    "required": False,
                    "description": text(
                        """
                        The model version whose rows are reported (one of `versions`); by default
                        the model served now (/health's model.version). `unknown` selects the rows
                        stored before the version was recorded. A version with no rows is no error:
                        it reports zero rows and null metrics.
                        """
                    ),
                    "schema": {"type": "string"},
                },
                {
                    "name": "by",
                    "in": "query",
                    "required": False,
                    "description": text(
                        """
                        Group the rows: up to 3 columns separated by commas; empty: one group
                        of every row. With `by`, the answer is StatsGroups: each group's
                        metrics with their intervals, the spreads between groups, and the
                        brief's rules.
                        """
                    ),
                    "schema": {"type": "string"},
                },
                API_KEY_NAME,
            ],
            "responses": {
                "200": {
                    "description": (
                        "The statistics of the window (zero counts and null metrics when it is "
                        "empty)"
                    ),
                    "content": json_content({"oneOf": [ref("Stats"), ref("StatsGroups")]}),
                },
                "404": {"$ref": "#/components/responses/NotFound"},
                "422": {"$ref": "#/components/responses/Invalid"},
                "503": {"$ref": "#/components/responses/DatabaseUnavailable"},
            },
        }
    },
    "/export": {
        "get": {
            "operationId": "export",
            "summary": "The stored rows as one table, streamed: CSV or JSON lines (admin only)",
            "description": text(
                """
                One line per stored row, in the order of their ids: row_id, the id fields (as
                sent), the features of columns.json (as sent; empty when missing), the prediction
                columns (named as clients/score_csv.py names them), the true value, model_version,
                created_at, then the fields the requests carried that the model ignores (those of
                the first 1,000 rows the filters select). Streamed a page at a time: the server's
                memory stays flat whatever the number of rows. Answers only with
                `Authorization: Bearer <ADMIN_TOKEN>`; without it, or when ADMIN_TOKEN is not
                set, the route answers 404.
                """
            ),
            "security": [{"adminToken": []}],
            "parameters": [
                {
                    "name": "format",
                    "in": "query",
                    "required": False,
                    "description": "csv (a header line, then a line per row) or jsonl (JSON lines)",
                    "schema": {"enum": ["csv", "jsonl"], "default": "csv"},
                },
                *TIME_WINDOW,
                {
                    "name": "model_version",
                    "in": "query",
                    "required": False,
                    "description": (
                        "Only the rows of this model version (`unknown`: rows stored before the "
                        "version was recorded); by default every version"
                    ),
                    "schema": {"type": "string", "minLength": 1},
                },
                {
                    "name": "labelled",
                    "in": "query",
                    "required": False,
                    "description": (
                        "true: only the rows whose true value arrived with /update; false: only "
                        "the others"
                    ),
                    "schema": {"enum": ["true", "false"]},
                },
                {
                    "name": "after_id",
                    "in": "query",
                    "required": False,
                    "description": (
                        "Only rows with a greater row_id (the row_id of the last line received: "
                        "resumes an export)"
                    ),
                    "schema": {
                        "type": "integer",
                        "format": "int64",
                        "minimum": -9223372036854775808,
                        "maximum": 9223372036854775807,
                    },
                },
                API_KEY_NAME,
            ],
            "responses": {
                "200": {
                    "description": "The rows, streamed",
                    "headers": {
                        "X-Export-Rows": {
                            "description": "How many rows the filters selected when it started",
                            "schema": {"type": "integer", "minimum": 0},
                        }
                    },
                    "content": {
                        "text/csv": {"schema": {"type": "string"}},
                        "application/jsonl": {"schema": {"type": "string"}},
                    },
                },
                "404": {"$ref": "#/components/responses/NotFound"},
                "422": {"$ref": "#/components/responses/Invalid"},
                "503": {"$ref": "#/components/responses/DatabaseUnavailable"},
            },
        }
    },
    "/metrics": {
        "get": {
            "operationId": "metrics",
            "summary": "Counters and histograms for Prometheus, over every worker (admin only)",
            "description": text(
                """
                The Prometheus text format. Answers only with `Authorization: Bearer <ADMIN_TOKEN>`
                (Prometheus sends it with the `authorization` setting of its scrape config); without
                it, or when ADMIN_TOKEN is not set, the route answers 404.
                """
            ),
            "security": [{"adminToken": []}],
            "responses": {
                "200": {
                    "description": "The metrics, in the Prometheus text exposition format",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                "404": {"$ref": "#/components/responses/NotFound"},
            },
        }
    },
    "/openapi.yaml": {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "responses": {
                "200": {
                    "description": "The OpenAPI document of this API",
                    "content": {"application/yaml": {}},
                }
            },
        }
    },
    "/openapi.json": {
        "get": {
            "operationId": "openapiJson",
            "summary": "This document, as JSON",
            "responses": {
                "200": {
                    "description": "The OpenAPI document of this API",
                    "content": {"application/json": {}},
                }
            },
        }
    },
}

PAGE_PATHS = {
    "/": {
        "get": {
            "operationId": "tryTheModel",
            "summary": 'The "try the model" web page',
            "description": text(
                """
                A form built from the loaded model, one field per column; it sends the observation
                to POST {predict} and shows the answer. For people, in a browser.
                """
            ),
            "responses": {"200": {"description": "The HTML page", "content": {"text/html": {}}}},
        }
    },
    "/monitor": {
        "get": {
            "operationId": "monitor",
            "summary": "The monitoring web page",
            "description": text(
                """
                A dashboard of GET /stats: the page asks for the admin token and calls /stats with
                it. For people, in a browser.
                """
            ),
            "responses": {"200": {"description": "The HTML page", "content": {"text/html": {}}}},
        }
    },
}
