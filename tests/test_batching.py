"""batching.MicroBatcher on its own, and store.score_and_store: a list in, a list out."""

import json
import threading
import time

import pytest
from conftest import probabilities, service

from model_service import parsing, store
from model_service.batching import BatchTimeout, MicroBatcher


class Recorder:
    """A process function that records its batches; it can block until released."""

    def __init__(self, work=lambda items: [item * 2 for item in items]):
        self.work = work
        self.batches = []
        self.started = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def __call__(self, items):
        self.batches.append(list(items))
        self.started.set()
        assert self.release.wait(10), "the test never released the batch"
        return self.work(items)


def submit_in_threads(batcher, items):
    """Submit each item from its own thread; return {item: result or exception}."""
    results = {}

    def run(item):
        try:
            results[item] = batcher.submit(item)
        except BaseException as error:  # KeyboardInterrupt stands for a killed greenlet
            results[item] = error

    threads = [threading.Thread(target=run, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    return threads, results


def hold_first_batch(batcher, recorder, first=0):
    """Start a batch of one item that blocks: everything submitted next has to wait."""
    recorder.release.clear()
    threads, results = submit_in_threads(batcher, [first])
    assert recorder.started.wait(5)
    return threads, results


def wait_for_queue(batcher, length):
    deadline = time.monotonic() + 5
    while len(batcher._waiting) < length:
        assert time.monotonic() < deadline, "the requests never reached the queue"
        time.sleep(0.001)


def test_a_lone_item_is_processed_at_once_in_a_batch_of_one():
    recorder = Recorder()
    batcher = MicroBatcher(recorder)
    assert batcher.submit(21) == 42
    assert recorder.batches == [[21]]


def test_items_waiting_together_share_one_call_in_order():
    recorder = Recorder()
    batcher = MicroBatcher(recorder)
    first_threads, first = hold_first_batch(batcher, recorder)
    threads, results = submit_in_threads(batcher, range(1, 31))
    wait_for_queue(batcher, 30)
    recorder.release.set()
    for thread in first_threads + threads:
        thread.join(5)

    assert first == {0: 0}
    assert results == {item: item * 2 for item in range(1, 31)}
    assert recorder.batches[0] == [0]
    assert sorted(recorder.batches[1]) == list(range(1, 31))  # all 30 in the second call
    assert len(recorder.batches) == 2


def test_the_cap_splits_what_waits_into_several_batches():
    recorder = Recorder()
    sizes = []
    batcher = MicroBatcher(recorder, max_batch_size=8, on_batch=sizes.append)
    first_threads, _ = hold_first_batch(batcher, recorder)
    threads, results = submit_in_threads(batcher, range(1, 21))
    wait_for_queue(batcher, 20)
    recorder.release.set()
    for thread in first_threads + threads:
        thread.join(5)

    assert results == {item: item * 2 for item in range(1, 21)}
    assert sizes == [1, 8, 8, 4]
    assert [len(batch) for batch in recorder.batches] == sizes


def test_a_failing_batch_fails_its_items_and_those_waiting_then_the_batcher_recovers():
    def work(items):
        if 13 in items:
            raise ConnectionError("database down")
        return [item * 2 for item in items]

    recorder = Recorder(work)
    batcher = MicroBatcher(recorder, max_batch_size=2)
    first_threads, _ = hold_first_batch(batcher, recorder, first=13)
    threads, results = submit_in_threads(batcher, [11, 12, 14, 15])
    wait_for_queue(batcher, 4)  # 13 is being processed; 11, 12, 14, 15 wait behind it
    recorder.release.set()
    for thread in first_threads + threads:
        thread.join(5)

    # The batch that held 13 failed, and the four that waited got its failure at once,
    # instead of each trying (and waiting on) the same broken database again.
    assert all(isinstance(result, ConnectionError) for result in results.values())
    assert recorder.batches == [[13]]
    assert batcher.submit(1) == 2  # the next request starts afresh


def test_a_process_that_returns_too_few_results_fails_the_batch():
    batcher = MicroBatcher(lambda items: items[:-1])
    with pytest.raises(RuntimeError, match="0 results for 1"):
        batcher.submit(1)


def test_a_request_that_waits_too_long_gets_batch_timeout_and_leaves_the_queue():
    recorder = Recorder()
    batcher = MicroBatcher(recorder, wait_timeout=0.2)
    first_threads, _ = hold_first_batch(batcher, recorder)
    with pytest.raises(BatchTimeout):
        batcher.submit(5)
    assert len(batcher._waiting) == 0  # withdrawn: no later batch scores it for nobody
    recorder.release.set()
    for thread in first_threads:
        thread.join(5)
    assert recorder.batches == [[0]]
    assert batcher.submit(6) == 12


def test_a_leader_killed_during_its_batch_fails_that_batch_and_passes_the_lead_on():
    started, release_the_kill = threading.Event(), threading.Event()

    def work(items):
        if 0 in items:
            started.set()
            assert release_the_kill.wait(5)
            raise KeyboardInterrupt  # as a greenlet killed mid-call by a stopping worker
        return [item * 2 for item in items]

    batcher = MicroBatcher(work, max_batch_size=2)
    leader = threading.Thread(target=lambda: pytest.raises(KeyboardInterrupt, batcher.submit, 0))
    leader.start()
    assert started.wait(5)  # item 0 is being processed, alone
    threads, results = submit_in_threads(batcher, [1, 2, 3])
    wait_for_queue(batcher, 3)
    release_the_kill.set()
    for thread in [leader, *threads]:
        thread.join(5)
    assert results == {1: 2, 2: 4, 3: 6}  # they were waiting, not in the killed batch
    assert batcher.submit(4) == 8


def test_items_stranded_in_a_killed_batch_fail_at_once():
    def work(items):
        if 1 in items:
            raise KeyboardInterrupt  # as a greenlet killed mid-call by a stopping worker
        return [item * 2 for item in items]

    recorder = Recorder(work)
    batcher = MicroBatcher(recorder)
    first_threads, _ = hold_first_batch(batcher, recorder)
    threads, results = submit_in_threads(batcher, [1, 2, 3])
    wait_for_queue(batcher, 3)
    recorder.release.set()
    for thread in first_threads + threads:
        thread.join(5)
    # The leader of [1, 2, 3] died with its call; the other two learn it now, not at a timeout.
    kinds = sorted(type(result).__name__ for result in results.values())
    assert kinds == ["BatchAbandoned", "BatchAbandoned", "KeyboardInterrupt"]
    assert batcher.submit(4) == 8 and not batcher._waiting


def test_a_leader_killed_before_its_batch_passes_the_lead_on():
    calls = []

    def gather():
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt  # as a greenlet killed by a stopping worker

    batcher = MicroBatcher(lambda items: [item * 2 for item in items], gather=gather)
    with pytest.raises(KeyboardInterrupt):
        batcher.submit(1)
    assert batcher.submit(2) == 4  # nothing left stuck in the queue or marked busy


def test_the_cap_must_be_positive():
    with pytest.raises(ValueError):
        MicroBatcher(lambda items: items, max_batch_size=0)


# store.score_and_store: the function the batcher runs for /predict


def request_for(model, observation_id, observation):
    body = json.dumps({"id": observation_id, "observation": observation})
    values = parsing.validate_observation(observation, model)
    return parsing.PredictionRequest(str(observation_id), observation_id, body, values)


def one_row_answer(model, observation):
    values = parsing.validate_observation(observation, model)
    return probabilities([values], model)[0]


class FussyPipeline:
    """The real pipeline, refusing every frame that holds a Sex it does not know, as an
    encoder with handle_unknown="error" would."""

    def __init__(self, pipeline):
        self.pipeline = pipeline

    def predict_proba(self, frame):
        if not frame["Sex"].isin(["female", "male"]).all():
            raise ValueError("Found unknown categories in column Sex")
        return self.pipeline.predict_proba(frame)


def test_score_and_store_answers_each_request_as_if_it_came_alone(app, example, monkeypatch):
    model = app.config["MODEL"]
    monkeypatch.setattr(model, "pipeline", FussyPipeline(model.pipeline))
    passengers = [dict(example, Age=age, Pclass=1 + age % 3) for age in range(1, 40)]
    other = dict(example, Age=77.0)
    bad = dict(example, Sex="unknown")
    requests = [request_for(model, i, p) for i, p in enumerate(passengers)]
    requests += [
        request_for(model, 5, passengers[5]),  # a retry inside the batch
        request_for(model, 6, other),  # a conflict inside the batch
        request_for(model, 1000, bad),
    ]
    with app.app_context():
        outcomes = store.score_and_store(requests, model, app.extensions["store"])

    for index, passenger in enumerate(passengers):
        expected = one_row_answer(model, passenger)
        assert outcomes[index]["probability"] == pytest.approx(expected, rel=1e-12, abs=0)
    assert outcomes[len(passengers)] == outcomes[5]  # the retry: the stored answer
    conflict = outcomes[len(passengers) + 1]
    assert conflict.status == 409 and conflict.extra["proba"] == pytest.approx(
        one_row_answer(model, other), rel=1e-12
    )
    invalid = outcomes[-1]
    assert isinstance(invalid, service.ApiError) and invalid.status == 422
    assert "unknown categories in column Sex" in invalid.message
    with app.app_context():
        assert service.Prediction.select().count() == len(passengers)  # nothing else stored
        stored = {p.observation_id: p.proba for p in service.Prediction.select()}
    answered = [outcome["probability"] for outcome in outcomes[: len(passengers)]]
    assert [stored[i] for i in range(len(passengers))] == answered
