"""LabelStudioOracle against a real Label Studio server (marker ``labelstudio``).

The server comes from the environment (``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY``, plus
``LABEL_STUDIO_DATA_DIR`` for the server-down test), as exported by
``source .ci/label_studio.sh start``; without ``LABEL_STUDIO_URL`` the module starts one itself
with that script when the Label Studio virtual environment exists (``$LS_VENV``, default
``~/.cache/activelab-ls-venv``), and fails with instructions otherwise. Deselect with
``-m "not labelstudio"``.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from activelab_lightning.errors import OracleUnavailable
from activelab_lightning.oracles.label_studio import SYSTEM, LabelStudioOracle
from activelab_lightning.records import LabelRequest
from activelab_lightning.store import AnnotationStore

pytestmark = [pytest.mark.labelstudio, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / ".ci" / "label_studio.sh"
CLASSES = ("cat", "dog", "bird")
_KEYS = ("LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY", "LABEL_STUDIO_PID", "LABEL_STUDIO_DATA_DIR")


def _script(command: str, env: dict[str, str], timeout: float = 420) -> dict[str, str]:
    """Run ``source .ci/label_studio.sh <command>`` and return the LABEL_STUDIO_* variables it exported."""
    out = subprocess.run(
        ["bash", "-c", f'source "{SCRIPT}" {command} && env'],
        check=False,
        env={**os.environ, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if out.returncode != 0:
        raise RuntimeError(f".ci/label_studio.sh {command} failed:\n{out.stderr[-3000:]}")
    pairs = (line.split("=", 1) for line in out.stdout.splitlines() if line.startswith("LABEL_STUDIO_"))
    return {k: v for k, v in pairs if k in _KEYS}


class Server:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.url = env["LABEL_STUDIO_URL"]
        self.token = env["LABEL_STUDIO_API_KEY"]

    def call(self, method: str, path: str, body=None):
        req = urllib.request.Request(
            self.url + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
        return json.loads(raw) if raw.strip() else None

    def add_user(self, tag: str) -> tuple[int, str]:
        email = f"{tag}-{uuid.uuid4().hex[:8]}@example.com"
        return self.call("POST", "/api/users/", {"email": email, "username": email.split("@")[0]})[
            "id"
        ], email

    def annotate(self, task_id: int, user_id: int, label: str) -> None:
        self.call(
            "POST",
            f"/api/tasks/{task_id}/annotations/",
            {
                "completed_by": user_id,
                "lead_time": 1.5,
                "result": [
                    {
                        "from_name": "label",
                        "to_name": "text",
                        "type": "choices",
                        "value": {"choices": [label]},
                    }
                ],
            },
        )

    def tasks(self, project_id: int) -> list[dict]:
        return self.call("GET", f"/api/tasks/?project={project_id}&fields=all&page_size=1000")["tasks"]

    def pause(self) -> None:
        _script("pause", self.env)

    def resume(self) -> None:
        self.env.update(_script("resume", self.env))


@pytest.fixture(scope="module")
def server():
    if os.environ.get("LABEL_STUDIO_URL"):
        if not os.environ.get("LABEL_STUDIO_API_KEY"):
            pytest.fail(
                "LABEL_STUDIO_URL is set but LABEL_STUDIO_API_KEY is not; export the server's API token"
            )
        yield Server({k: os.environ[k] for k in _KEYS if k in os.environ})
        return
    # No server given: start a throw-away one. The script installs label-studio into $LS_VENV first
    # when it is missing (about 2 minutes, from PyPI) and keeps a migrated template for later starts.
    venv = Path(os.environ.get("LS_VENV", Path.home() / ".cache" / "activelab-ls-venv"))
    env = _script("start", {"LS_VENV": str(venv)})
    try:
        yield Server(env)
    finally:
        _script("stop", {**env, "LS_VENV": str(venv)}, timeout=60)


@pytest.fixture()
def store(tmp_path):
    return AnnotationStore(tmp_path / "labels.db", num_examples=50, class_names=CLASSES)


def make_oracle(store, title: str, **kwargs) -> LabelStudioOracle:
    kwargs.setdefault("retries", 2)
    kwargs.setdefault("backoff", 0.2)
    return LabelStudioOracle(
        list(CLASSES), store=store, project_title=title, show_fn=lambda e: f"sensor reading {e}", **kwargs
    )


def begin(store, round, ids):
    requests = []
    for i, e in enumerate(ids):
        existing = store.annotators_of([e])[0]
        requests.append(LabelRequest(e, 0.1 * (i + 1), "relabel" if existing else "new", round, existing))
    store.begin_round(round, seed=round, requests=requests)


def step(oracle, store, round):
    response = oracle.request(store.pending_requests(round))
    store.record_response(response)
    if not response.pending:
        store.complete_round(round)
    return response


def test_two_rounds_with_three_real_annotators(server, store, monkeypatch):
    monkeypatch.setenv("LABEL_STUDIO_URL", server.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", server.token)
    (u0, e0), (u1, e1), (u2, e2) = (server.add_user(f"annotator{i}") for i in range(3))
    oracle = make_oracle(store, f"activelab-it-{uuid.uuid4().hex[:8]}")

    # round 0: six new examples
    begin(store, 0, [0, 1, 2, 3, 4, 5])
    assert step(oracle, store, 0).annotations == ()
    pid = oracle.project_id
    task = {t["data"]["example_id"]: t["id"] for t in server.tasks(pid)}
    assert sorted(task) == [0, 1, 2, 3, 4, 5]
    assert {r: int(t) for r, t in store.external_ids(SYSTEM).items()} == {f"r0:e{e}": task[e] for e in task}
    server.annotate(task[0], u0, "cat")
    server.annotate(task[0], u0, "dog")  # the same user twice: the latest counts
    server.annotate(task[1], u1, "bird")
    server.annotate(task[2], u2, "cat")
    server.annotate(task[3], u0, "bird")
    server.annotate(task[5], u2, "zebra")  # not in the config: Label Studio accepts it, we do not
    response = step(oracle, store, 0)
    assert sorted(r.example_id for r in response.pending) == [4, 5]
    assert any("'zebra'" in p.reason for p in oracle.problems)
    server.annotate(task[4], u1, "dog")
    server.annotate(task[5], u0, "bird")  # the overlap was raised for a second annotator
    step(oracle, store, 0)
    assert store.round_record(0).status == "completed"

    # round 1: re-label 0 and 1 (someone else must answer), one new example; answers arrive while polling
    begin(store, 1, [0, 1, 6])
    polling = make_oracle(store, oracle.project_title, timeout=45, poll_interval=0.5)

    def humans():
        deadline = time.monotonic() + 30
        tasks: dict = {}
        while 6 not in tasks and time.monotonic() < deadline:  # until the oracle imported the new task
            time.sleep(0.5)
            tasks = {t["data"]["example_id"]: t for t in server.tasks(pid)}
        server.annotate(tasks[0]["id"], u1, "dog")
        server.annotate(tasks[1]["id"], u2, "bird")
        server.annotate(tasks[6]["id"], u0, "cat")

    thread = threading.Thread(target=humans)
    thread.start()
    response = step(polling, store, 1)
    thread.join()
    assert response.pending == () and store.round_record(1).status == "completed"
    tasks = {t["data"]["example_id"]: t for t in server.tasks(pid)}
    assert len(server.tasks(pid)) == 7 and tasks[0]["id"] == task[0]  # re-labels reuse the example's task
    # two annotations by annotator0 + room for one more annotator
    assert tasks[0]["overlap"] == 3 and tasks[0]["data"]["request_id"] == "r1:e0"

    expected = {
        (0, e0): 1,
        (1, e1): 2,
        (2, e2): 0,
        (3, e0): 2,
        (4, e1): 1,
        (5, e0): 2,
        (0, e1): 1,
        (1, e2): 2,
        (6, e0): 0,
    }
    matrix, annotators = store.label_matrix(list(range(7)))
    stored = {
        (i, annotators[j]): int(matrix[i, j])
        for i in range(7)
        for j in range(len(annotators))
        if matrix[i, j] == matrix[i, j]
    }
    assert stored == expected and len(store) == len(expected)  # each annotation exactly once
    assert store.annotator_counts() == {e0: 4, e1: 3, e2: 2}

    # a restarted process asking everything again adds nothing and imports nothing
    again = make_oracle(store, oracle.project_title)
    assert again.request(store.requests(0) + store.requests(1)).annotations == ()
    assert len(server.tasks(pid)) == 7 and len(store) == len(expected)


def test_wrong_token_is_a_clear_error_and_nothing_is_lost(server, store, monkeypatch):
    monkeypatch.setenv("LABEL_STUDIO_URL", server.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "not-the-right-token-123456")
    begin(store, 0, [1, 2])
    oracle = make_oracle(store, f"activelab-it-{uuid.uuid4().hex[:8]}")
    with pytest.raises(
        OracleUnavailable, match=r"refused the token in \$LABEL_STUDIO_API_KEY \(HTTP 401"
    ) as err:
        oracle.request(store.pending_requests(0))
    assert "not-the-right-token" not in str(err.value)
    assert len(store) == 0 and len(store.pending_requests(0)) == 2 and store.external_ids(SYSTEM) == {}


def test_server_stopped_mid_round_then_resumed(server, store, monkeypatch):
    if "LABEL_STUDIO_DATA_DIR" not in server.env:
        pytest.fail(
            "this test restarts the server: start it with `source .ci/label_studio.sh start`, which exports "
            "LABEL_STUDIO_DATA_DIR"
        )
    monkeypatch.setenv("LABEL_STUDIO_URL", server.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", server.token)
    (u0, e0), (u1, e1) = server.add_user("down0"), server.add_user("down1")
    oracle = make_oracle(store, f"activelab-it-{uuid.uuid4().hex[:8]}")
    begin(store, 0, [7, 8])
    step(oracle, store, 0)
    task = {t["data"]["example_id"]: t["id"] for t in server.tasks(oracle.project_id)}
    server.annotate(task[7], u0, "cat")
    server.annotate(task[8], u1, "dog")
    server.pause()
    try:
        with pytest.raises(
            OracleUnavailable, match=r"did not answer .* after 3 attempts.*Nothing stored was lost"
        ):
            oracle.request(store.pending_requests(0))
        assert len(store) == 0 and len(store.pending_requests(0)) == 2
    finally:
        server.resume()
    response = step(oracle, store, 0)
    assert sorted((a.example_id, a.annotator_id, a.label) for a in response.annotations) == [
        (7, e0, 0),
        (8, e1, 1),
    ]
    assert store.round_record(0).status == "completed" and len(server.tasks(oracle.project_id)) == 2
