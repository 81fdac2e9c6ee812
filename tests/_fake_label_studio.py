"""A tiny in-process imitation of the Label Studio REST endpoints that LabelStudioOracle uses.

It mimics the behaviour measured on label-studio 1.23.2 (see the project's research notes),
including what the real server accepts silently: labels that are not in the config, two
annotations by one user on one task, duplicate imports. Faults can be injected: answer the next
requests with a status (``fail_next``), refuse every token, or stop / restart the server on the
same port with the same state.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

TOKEN = "fake-legacy-token-0123456789"


class FakeLabelStudio:
    """State + server. ``url`` is ``http://127.0.0.1:<port>``; start with :meth:`start`."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.jwt_access = "access-0"
        self.projects: dict[int, dict[str, Any]] = {}
        self.tasks: dict[int, dict[str, Any]] = {}
        self.predictions: dict[int, dict[str, Any]] = {}
        self.users: dict[int, dict[str, Any]] = {1: {"id": 1, "email": "admin@example.com", "username": ""}}
        self.calls: list[tuple[str, str]] = []
        self.failures: list[int] = []
        self._next = {"project": 1, "task": 1, "annotation": 1, "prediction": 1, "user": 2}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeLabelStudio:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                status, answer = fake.handle(
                    self.command, self.path, self.headers.get("Authorization", ""), body
                )
                raw = b"" if answer is None else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_PATCH = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening (connections are refused); the state is kept for :meth:`start`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def fail_next(self, *statuses: int) -> None:
        """Answer the next requests with these HTTP statuses (one each), then behave again."""
        self.failures.extend(statuses)

    # -- helpers for tests ----------------------------------------------------------------------
    def add_user(self, email: str) -> int:
        with self._lock:
            uid = self._take("user")
            self.users[uid] = {"id": uid, "email": email, "username": email.split("@")[0]}
            return uid

    def annotate(self, task_id: int, user_id: int, label: str, *, cancelled: bool = False) -> int:
        with self._lock:
            task = self.tasks[task_id]
            aid = self._take("annotation")
            stamp = f"2026-01-01T00:00:{aid:02d}Z"
            task["annotations"].append(
                {
                    "id": aid,
                    "completed_by": user_id,
                    "was_cancelled": cancelled,
                    "task": task_id,
                    "created_at": stamp,
                    "updated_at": stamp,
                    "result": []
                    if cancelled
                    else [
                        {
                            "from_name": "label",
                            "to_name": "text",
                            "type": "choices",
                            "value": {"choices": [label]},
                        }
                    ],
                }
            )
            self._relabel(task)
            return aid

    def project_tasks(self, project_id: int) -> list[dict[str, Any]]:
        return [t for t in self.tasks.values() if t["project"] == project_id]

    def task_of(self, project_id: int, example_id: int) -> dict[str, Any]:
        (task,) = [t for t in self.project_tasks(project_id) if t["data"].get("example_id") == example_id]
        return task

    def count(self, method: str, prefix: str) -> int:
        return sum(1 for m, p in self.calls if m == method and p.startswith(prefix))

    # -- the API --------------------------------------------------------------------------------
    def _take(self, kind: str) -> int:
        value = self._next[kind]
        self._next[kind] += 1
        return value

    @staticmethod
    def _relabel(task: dict[str, Any]) -> None:
        task["is_labeled"] = len(task["annotations"]) >= task["overlap"]

    def _authorized(self, auth: str) -> bool:
        return auth in (f"Token {self.token}", f"Bearer {self.jwt_access}")

    def handle(self, method: str, raw_path: str, auth: str, body: Any) -> tuple[int, Any]:
        parsed = urlparse(raw_path)
        path, query = parsed.path, {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        with self._lock:
            self.calls.append((method, path))
            if self.failures:
                status = self.failures.pop(0)
                return status, {"detail": f"injected failure {status}"}
            if path == "/health":
                return 200, {"status": "UP"}
            if path == "/api/token/refresh/" and method == "POST":
                if body and body.get("refresh") == self.token:
                    return 200, {"access": self.jwt_access}
                return 401, {"detail": "Token is invalid or expired"}
            if not self._authorized(auth):
                return 401, {"detail": "Invalid token."}
            return self._route(method, path, query, body)

    def _route(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        m = re.fullmatch(r"/api/projects/(\d+)/?", path)
        if m:
            project = self.projects.get(int(m.group(1)))
            if project is None:
                return 404, {"detail": "No Project matches the given query."}
            if method == "PATCH":
                version = body.get("model_version")
                if version is not None and not any(
                    p["model_version"] == version
                    for p in self.predictions.values()
                    if p["project"] == project["id"]
                ):
                    return 400, {
                        "detail": "Validation error",
                        "validation_errors": {"model_version": ["unknown"]},
                    }
                project.update(body)
            return 200, project
        if path.rstrip("/") == "/api/projects":
            if method == "POST":
                pid = self._take("project")
                self.projects[pid] = {"id": pid, "maximum_annotations": 1, "model_version": "", **body}
                return 201, self.projects[pid]
            return 200, {
                "count": len(self.projects),
                "next": None,
                "previous": None,
                "results": list(self.projects.values()),
            }
        m = re.fullmatch(r"/api/projects/(\d+)/import", path)
        if m and method == "POST":
            pid = int(m.group(1))
            ids = []
            for item in body:
                tid = self._take("task")
                task = {
                    "id": tid,
                    "project": pid,
                    "data": dict(item["data"]),
                    "annotations": [],
                    "overlap": self.projects[pid].get("maximum_annotations", 1),
                    "is_labeled": False,
                }
                self.tasks[tid] = task
                for pred in item.get("predictions", []):
                    self._add_prediction(tid, pid, pred)
                ids.append(tid)
            return 201, {"task_count": len(ids), "task_ids": ids if query.get("return_task_ids") else None}
        if path.rstrip("/") == "/api/tasks" and method == "GET":
            tasks = sorted(self.project_tasks(int(query["project"])), key=lambda t: t["id"])
            page, size = int(query.get("page", 1)), int(query.get("page_size", 100))
            chunk = tasks[(page - 1) * size : page * size]
            if not chunk and page > 1:
                return 404, {"detail": "Invalid page."}
            return 200, {"total": len(tasks), "tasks": json.loads(json.dumps(chunk))}
        m = re.fullmatch(r"/api/tasks/(\d+)/?", path)
        if m:
            task = self.tasks.get(int(m.group(1)))
            if task is None:
                return 404, {"detail": "No Task matches the given query."}
            if method == "DELETE":
                del self.tasks[task["id"]]
                return 204, None
            if method == "PATCH":
                task.update(body)
            return 200, task
        if path.rstrip("/") == "/api/predictions" and method == "POST":
            task = self.tasks.get(body["task"])
            if task is None:
                return 400, {"detail": "Validation error"}
            return 201, self._add_prediction(task["id"], task["project"], body)
        if path.rstrip("/") == "/api/users":
            if method == "POST":
                uid = self._take("user")
                self.users[uid] = {"id": uid, "email": body["email"], "username": body.get("username", "")}
                return 201, self.users[uid]
            return 200, list(self.users.values())
        return 404, {"detail": f"no route {method} {path}"}

    def _add_prediction(self, task_id: int, project_id: int, pred: dict[str, Any]) -> dict[str, Any]:
        pid = self._take("prediction")
        self.predictions[pid] = {
            "id": pid,
            "task": task_id,
            "project": project_id,
            "model_version": pred.get("model_version", ""),
            "score": pred.get("score"),
        }
        return self.predictions[pid]
