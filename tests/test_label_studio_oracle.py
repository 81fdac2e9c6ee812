"""LabelStudioOracle against an in-process fake of the Label Studio REST API (no network, fast)."""

from __future__ import annotations

import logging

import pytest

from activelab_lightning.errors import OracleUnavailable
from activelab_lightning.oracles import get_oracle
from activelab_lightning.oracles.label_studio import (
    SYSTEM,
    LabelStudioClient,
    LabelStudioError,
    LabelStudioOracle,
    label_config,
)
from activelab_lightning.records import LabelRequest
from activelab_lightning.store import AnnotationStore
from tests._fake_label_studio import TOKEN, FakeLabelStudio

CLASSES = ("cat", "dog", "bird")


@pytest.fixture()
def fake():
    server = FakeLabelStudio().start()
    yield server
    server.stop()


@pytest.fixture()
def env(fake, monkeypatch):
    monkeypatch.setenv("LABEL_STUDIO_URL", fake.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", TOKEN)
    return fake


@pytest.fixture()
def store():
    return AnnotationStore(num_examples=20, class_names=CLASSES)


class FakeSleep:
    def __init__(self, action=None):
        self.delays: list[float] = []
        self.action = action

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if self.action is not None:
            self.action(len(self.delays))


def make_oracle(store=None, **kwargs) -> LabelStudioOracle:
    kwargs.setdefault("sleep", FakeSleep())
    kwargs.setdefault("backoff", 0.5)
    kwargs.setdefault("retries", 2)
    return LabelStudioOracle(list(CLASSES), store=store, show_fn=lambda e: f"example {e}", **kwargs)


def new_round(store, round, ids, *, kind="new"):
    requests = []
    for i, e in enumerate(ids):
        existing = store.annotators_of([e])[0]
        requests.append(LabelRequest(e, 0.1 * (i + 1), "relabel" if existing else kind, round, existing))
    store.begin_round(round, seed=round, requests=requests)
    return store.pending_requests(round)


def step(oracle, store, round):
    response = oracle.request(store.pending_requests(round))
    store.record_response(response)
    return response


def test_round_trip_records_task_ids_and_annotator_emails(env, store):
    alice, bob = env.add_user("alice@example.com"), env.add_user("bob@example.com")
    oracle = make_oracle(store)
    pending = new_round(store, 0, [3, 7])
    first = step(oracle, store, 0)
    assert first.annotations == () and len(first.pending) == 2
    ids = store.external_ids(SYSTEM)
    assert set(ids) == {"r0:e3", "r0:e7"}
    project = env.projects[oracle.project_id]
    assert project["sampling"] == "Uncertainty sampling" and project["model_version"] == "activelab-r0"
    assert '<Choice value="bird"/>' in project["label_config"]
    task = env.tasks[int(ids["r0:e3"])]
    assert task["data"]["example_id"] == 3 and task["data"]["request_id"] == "r0:e3"
    assert task["data"]["text"] == "example 3"
    scores = {p["task"]: p["score"] for p in env.predictions.values()}
    assert scores[int(ids["r0:e3"])] == pytest.approx(pending[0].score)

    env.annotate(int(ids["r0:e3"]), alice, "dog")
    env.annotate(int(ids["r0:e7"]), bob, "bird")
    second = step(oracle, store, 0)
    assert second.pending == ()
    assert sorted(
        (a.example_id, a.annotator_id, a.label, a.request_id, a.source) for a in second.annotations
    ) == [
        (3, "alice@example.com", 1, "r0:e3", "oracle:label_studio"),
        (7, "bob@example.com", 2, "r0:e7", "oracle:label_studio"),
    ]
    assert len(store) == 2 and store.pending_requests() == []


def test_registry_builds_it(env):
    oracle = get_oracle("label-studio", class_names=list(CLASSES))
    assert isinstance(oracle, LabelStudioOracle)


def test_restart_never_reimports_nor_double_counts(env, store):
    alice = env.add_user("alice@example.com")
    new_round(store, 0, [1, 2])
    step(make_oracle(store), store, 0)
    env.annotate(env.task_of(1, 1)["id"], alice, "cat")
    step(make_oracle(store), store, 0)
    imports = env.count("POST", "/api/projects/1/import")
    # a fresh process: new oracle, same store, same project title
    again = make_oracle(store)
    response = again.request(store.pending_requests(0))
    assert response.annotations == () and [r.example_id for r in response.pending] == [2]
    assert env.count("POST", "/api/projects/1/import") == imports
    assert len(env.project_tasks(1)) == 2 and len(store) == 1


def test_import_that_succeeded_before_a_crash_is_matched_by_example_id(env, store):
    new_round(store, 0, [4, 5])
    # the first process imported the tasks but died before writing their ids to the store
    make_oracle(None).request(store.pending_requests(0))
    assert store.external_ids(SYSTEM) == {}
    make_oracle(store).request(store.pending_requests(0))
    assert len(env.project_tasks(1)) == 2
    assert {int(t) for t in store.external_ids(SYSTEM).values()} == {t["id"] for t in env.project_tasks(1)}


def test_relabel_reuses_the_task_and_raises_its_overlap(env, store):
    alice, bob = env.add_user("alice@example.com"), env.add_user("bob@example.com")
    new_round(store, 0, [6])
    oracle = make_oracle(store)
    step(oracle, store, 0)
    task_id = env.task_of(1, 6)["id"]
    env.annotate(task_id, alice, "cat")
    step(oracle, store, 0)
    store.complete_round(0)
    (req,) = new_round(store, 1, [6])
    assert req.kind == "relabel" and req.existing_annotators == ("alice@example.com",)
    response = step(oracle, store, 1)
    task = env.tasks[task_id]
    assert len(env.project_tasks(1)) == 1 and store.external_ids(SYSTEM)["r1:e6"] == str(task_id)
    assert task["overlap"] == 2 and task["is_labeled"] is False
    assert task["data"]["request_id"] == "r1:e6" and task["data"]["kind"] == "relabel"
    assert env.projects[1]["model_version"] == "activelab-r1"
    assert any(
        p["task"] == task_id and p["model_version"] == "activelab-r1" for p in env.predictions.values()
    )
    assert response.annotations == () and len(response.pending) == 1  # alice's label is not an answer
    env.annotate(task_id, bob, "dog")
    response = step(oracle, store, 1)
    assert [(a.annotator_id, a.label, a.request_id) for a in response.annotations] == [
        ("bob@example.com", 1, "r1:e6")
    ]
    matrix, annotators = store.label_matrix([6])
    assert annotators == ["alice@example.com", "bob@example.com"] and matrix.tolist() == [[0.0, 1.0]]


def test_label_not_in_config_is_reported_and_skipped(env, store, caplog):
    alice, bob = env.add_user("alice@example.com"), env.add_user("bob@example.com")
    new_round(store, 0, [2])
    oracle = make_oracle(store)
    step(oracle, store, 0)
    task_id = env.task_of(1, 2)["id"]
    env.annotate(task_id, alice, "zebra")
    with caplog.at_level(logging.WARNING):
        response = step(oracle, store, 0)
    assert response.annotations == () and len(response.pending) == 1
    (problem,) = oracle.problems
    assert (
        problem.line == task_id and "'zebra'" in problem.reason and "not in the class list" in problem.reason
    )
    assert "zebra" in caplog.text
    assert env.tasks[task_id]["overlap"] == 2 and env.tasks[task_id]["is_labeled"] is False  # room for bob
    env.annotate(task_id, bob, "bird")
    assert [a.annotator_id for a in step(oracle, store, 0).annotations] == ["bob@example.com"]
    assert len(store) == 1


def test_duplicate_annotations_keep_the_latest_and_cancelled_are_skipped(env, store):
    alice, bob = env.add_user("alice@example.com"), env.add_user("bob@example.com")
    new_round(store, 0, [8])
    oracle = make_oracle(store)
    step(oracle, store, 0)
    task_id = env.task_of(1, 8)["id"]
    env.annotate(task_id, bob, "", cancelled=True)
    env.annotate(task_id, alice, "cat")
    env.annotate(task_id, alice, "bird")
    response = step(oracle, store, 0)
    assert [(a.annotator_id, a.label) for a in response.annotations] == [("alice@example.com", 2)]
    assert any("more than once" in p.reason for p in oracle.problems)
    # asking again never re-adds or changes what is stored
    env.annotate(task_id, alice, "dog")
    assert oracle.request(store.requests(0)).annotations == ()
    assert any("stored label is kept" in p.reason for p in oracle.problems)
    assert len(store) == 1 and store.label_matrix([8])[0].tolist() == [[2.0]]


def test_deleted_task_is_imported_again_once_then_exhausted(env, store):
    new_round(store, 0, [9])
    oracle = make_oracle(store)
    step(oracle, store, 0)
    first = env.task_of(1, 9)["id"]
    env.handle("DELETE", f"/api/tasks/{first}/", f"Token {TOKEN}", None)
    response = step(oracle, store, 0)
    second = env.task_of(1, 9)["id"]
    assert second != first and store.external_ids(SYSTEM)["r0:e9"] == str(second)
    assert len(response.pending) == 1 and response.exhausted == ()
    env.handle("DELETE", f"/api/tasks/{second}/", f"Token {TOKEN}", None)
    response = make_oracle(store).request(store.pending_requests(0))  # also after a restart
    assert [r.request_id for r in response.exhausted] == ["r0:e9"] and response.pending == ()
    store.record_response(response)
    assert store.request_status(0) == {"r0:e9": "exhausted"}


def test_polls_until_answers_arrive(env, store):
    alice = env.add_user("alice@example.com")
    new_round(store, 0, [1])

    def answer_on_second_poll(n: int) -> None:
        if n == 2:
            env.annotate(env.task_of(1, 1)["id"], alice, "dog")

    sleep = FakeSleep(answer_on_second_poll)
    oracle = make_oracle(store, timeout=60, poll_interval=5, sleep=sleep)
    response = oracle.request(store.pending_requests(0))
    assert [a.label for a in response.annotations] == [1] and response.pending == ()
    assert sleep.delays == [5, 5]


def test_timeout_returns_what_arrived_and_the_rest_pending(env, store):
    new_round(store, 0, [1, 2])
    sleep = FakeSleep()
    response = make_oracle(store, timeout=12, poll_interval=5, sleep=sleep).request(store.pending_requests(0))
    assert len(response.pending) == 2 and sleep.delays == [5, 5, 2]


def test_retries_5xx_with_exponential_backoff(env, store):
    new_round(store, 0, [1])
    sleep = FakeSleep()
    oracle = make_oracle(store, retries=3, backoff=0.5, sleep=sleep)
    env.fail_next(503, 502, 500)
    response = oracle.request(store.pending_requests(0))
    assert len(response.pending) == 1 and sleep.delays == [0.5, 1.0, 2.0]


def test_wrong_token_fails_at_once_without_leaking_it(env, store, monkeypatch):
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "wrong-secret-token-42")
    new_round(store, 0, [1])
    sleep = FakeSleep()
    oracle = make_oracle(store, sleep=sleep)
    with pytest.raises(
        OracleUnavailable, match=r"refused the token in \$LABEL_STUDIO_API_KEY \(HTTP 401"
    ) as err:
        oracle.request(store.pending_requests(0))
    assert "wrong-secret-token-42" not in str(err.value) and "wrong-secret-token-42" not in repr(oracle)
    assert len(env.calls) == 1 and sleep.delays == []
    assert len(store) == 0 and store.external_ids(SYSTEM) == {}


def test_server_down_mid_round_then_resume(env, store):
    alice, bob = env.add_user("alice@example.com"), env.add_user("bob@example.com")
    new_round(store, 0, [1, 2])
    oracle = make_oracle(store)
    step(oracle, store, 0)
    env.annotate(env.task_of(1, 1)["id"], alice, "cat")
    step(oracle, store, 0)
    env.annotate(env.task_of(1, 2)["id"], bob, "dog")
    env.stop()
    sleep = FakeSleep()
    down = make_oracle(store, sleep=sleep, retries=2, backoff=0.25)
    with pytest.raises(
        OracleUnavailable, match=r"did not answer GET .* after 3 attempts .*Nothing stored was lost"
    ):
        down.request(store.pending_requests(0))
    assert sleep.delays == [0.25, 0.5]
    assert len(store) == 1 and store.pending_requests(0)[0].example_id == 2
    env.start()  # back on the same port with the same data
    response = step(down, store, 0)
    assert [(a.example_id, a.annotator_id) for a in response.annotations] == [(2, "bob@example.com")]
    assert len(store) == 2 and len(env.project_tasks(1)) == 2


def test_personal_access_token_is_exchanged_for_a_bearer_token(env, store):
    env.token = "eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCJ9.c2lnbmF0dXJl"
    env.jwt_access = "short-lived-access"
    client = LabelStudioClient(env.url, env.token, sleep=FakeSleep())
    assert client.call("GET", "/api/users/")[0]["email"] == "admin@example.com"
    assert env.count("POST", "/api/token/refresh/") == 1
    env.jwt_access = "rotated"  # the access token expired: one refresh, then the call succeeds
    assert client.call("GET", "/api/users/")[0]["email"] == "admin@example.com"
    assert env.count("POST", "/api/token/refresh/") == 2


def test_reused_project_with_other_classes_is_refused(env):
    env.handle(
        "POST",
        "/api/projects/",
        f"Token {TOKEN}",
        {"title": "activelab", "label_config": label_config(["x", "y"])},
    )
    with pytest.raises(
        ValueError, match=r"has choices \['x', 'y'\].*class_names is \['cat', 'dog', 'bird'\]"
    ):
        make_oracle().request([LabelRequest(1, 0.1, "new", 0)])


def test_other_client_errors_name_the_status(env):
    env.fail_next(400)
    with pytest.raises(LabelStudioError, match="HTTP 400: injected failure 400") as err:
        make_oracle().request([LabelRequest(1, 0.1, "new", 0)])
    assert err.value.status == 400


def test_constructor_errors(monkeypatch):
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    with pytest.raises(ValueError, match=r"url is not set: pass url=... or set \$LABEL_STUDIO_URL"):
        LabelStudioOracle(list(CLASSES))
    with pytest.raises(ValueError, match=r"api token missing: set \$MY_TOKEN"):
        LabelStudioOracle(list(CLASSES), url="http://127.0.0.1:1", api_key_env="MY_TOKEN")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "t" * 10)
    with pytest.raises(ValueError, match="must start with http"):
        LabelStudioOracle(list(CLASSES), url="127.0.0.1:8080")
    with pytest.raises(ValueError, match="data_type must be 'text' or 'image', got 'audio'"):
        LabelStudioOracle(list(CLASSES), url="http://x", data_type="audio")
    with pytest.raises(ValueError, match="at least 2 distinct names"):
        LabelStudioOracle(["cat", "cat"], url="http://x")
    oracle = LabelStudioOracle(list(CLASSES), url="http://x")
    with pytest.raises(ValueError, match="differ from the store's"):
        oracle.bind(store=AnnotationStore(num_examples=3, class_names=["a", "b"]))


def test_image_tasks_carry_png_data_urls(env, store):
    import torch

    oracle = LabelStudioOracle(
        list(CLASSES),
        store=store,
        data_type="image",
        sleep=FakeSleep(),
        show_fn=lambda e: torch.rand(1, 8, 8),
    )
    new_round(store, 0, [3])
    oracle.request(store.pending_requests(0))
    (task,) = env.project_tasks(1)
    assert task["data"]["image"].startswith("data:image/png;base64,")
    assert '<Image name="image" value="$image"/>' in env.projects[1]["label_config"]


def test_one_answer_per_annotator_when_an_example_is_pending_in_two_rounds(env, store):
    alice = env.add_user("alice@example.com")
    new_round(store, 0, [3])
    store.complete_round(0)  # round 0 closed with its request still pending (e.g. a run with a deadline)
    store.begin_round(1, 1, [LabelRequest(3, 0.2, "new", 1)])
    oracle = make_oracle(store)
    oracle.request(store.pending_requests())
    assert len(env.project_tasks(1)) == 1  # one task per example
    env.annotate(env.task_of(1, 3)["id"], alice, "dog")
    response = oracle.request(store.pending_requests())
    assert [(a.annotator_id, a.request_id) for a in response.annotations] == [("alice@example.com", "r0:e3")]
    assert [r.request_id for r in response.pending] == ["r1:e3"]
    store.record_response(response)
    assert len(store) == 1
