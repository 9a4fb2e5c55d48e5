"""What happens in the service that other modules may listen to, without being known.

monitoring counts them: the request's steps send them and never import monitoring.
"""

from blinker import Namespace

signals = Namespace()
# outcomes=[output or ApiError], requests=[PredictionRequest] (parsing.py), in the same order
predictions_answered = signals.signal("predictions-answered")
batch_scored = signals.signal("batch-scored")  # size=<requests scored together>
database_unavailable = signals.signal("database-unavailable")  # error=<the exception>
# [predict] invalid = "as_missing": the values treated as missing in the answered requests.
values_replaced = signals.signal("values-replaced")  # replaced=[{field: why}, ...]
# CHALLENGER_DIR (challenger.py): rows the challenger scored, failed on, or had to skip.
challenger_scored = signals.signal("challenger-scored")  # scored=, failed=, skipped=
# In the transaction that writes them (store.py), for counts kept beside the rows (rollups):
rows_stored = signals.signal("rows-stored")  # rows=[the new rows, peewee instances]
row_labelled = signals.signal("row-labelled")  # before=, after=: a row as it was, as it is
