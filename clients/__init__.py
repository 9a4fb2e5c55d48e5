"""The command-line clients of the service: each speaks the contract that GET /health reports.

    python clients/smoke_check.py URL            checks a deployed service (standard library)
    python clients/score_csv.py URL IN OUT       scores a CSV file through the batch route
    python clients/replay_traffic.py URL         replays notebook 1's held-out passengers
    python clients/export.py URL OUT             downloads the stored rows (GET /export)

They are programs of their own, not part of the service: the Docker image leaves them out.
"""
