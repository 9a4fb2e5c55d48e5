"""The engine behind app.py: everything a student never needs to edit.

app.py tells the story of one request and calls these modules by name. One request goes
through `parsing` (read the JSON body, the id and the observation, as the contract says),
`scoring` (the pipeline's outputs for several requests in one call) and `store` (one
transaction for the batch, a retry answered with what was stored), with `batching` (the
micro-batcher that groups the requests in flight). At start-up, `settings` reads the
environment, `artifacts` loads and checks pipeline.pickle, columns.json and dtypes.pickle,
`tasks` reads what the model does (binary, multiclass, regression), `contract` reads the
brief's api.toml, `database` connects to DATABASE_URL and `migrations` upgrades an older
table in place. `errors` answers every error as JSON, `signals` tells monitoring what
happened, `values` reads JSON numbers, `web` holds the routes' small helpers and
`answer_columns` names the answer's columns of a table (clients/score_csv.py imports it).
Each other capability is a module wired in by one call in app.py's create_app: `health`
(GET /health), `challenger` (CHALLENGER_DIR: a second model scores every answer in the
shadow, to compare before promoting it with MODEL_DIR), `monitoring` (GET /stats,
/stats?by= and /metrics: quality, drift, groups and rules), `export` (GET /export: the
stored rows as one table, streamed), `predict_batch` (POST /predict-batch), `pages` (GET /
and /monitor) and `openapi` (the OpenAPI document, made from the model and its contract).
Open on the internet, each off by default: `api_keys` (API_KEYS: who may score and label),
`rate_limits` (RATE_LIMIT, and MAX_QUEUED_PREDICTIONS: a 429 or a 503 at once),
`security_headers` (the headers of every answer; CORS_ORIGINS), `privacy` (api.toml's
[store] drop and hash: personal data kept out of the store) and `quota` (DATABASE_QUOTA_MB:
the store's size, and what a full store does).
"""
