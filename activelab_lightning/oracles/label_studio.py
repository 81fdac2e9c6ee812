"""Human annotators through a Label Studio server (REST API, standard library HTTP client).

:class:`LabelStudioOracle` keeps **one Label Studio task per example**:

* a request for a new example imports a task whose ``data`` carries our ``example_id`` and
  ``request_id`` and whose prediction score is the ActiveLab score; the project uses
  "Uncertainty sampling" with ``model_version = "activelab-r<round>"``, so Label Studio serves
  the lowest score (the most useful label) first;
* a re-label request reuses the example's task and raises its ``overlap`` by one: Label Studio
  never gives a task twice to the same user, so the new label comes from a different annotator;
* each non-cancelled annotation becomes one store annotation whose annotator id is the user's
  e-mail (``completed_by``), so CROWDLAB learns each real annotator's quality.

Restarts are safe: task ids are written to the store (``set_external_id``) right after an import,
and tasks are also matched by their ``data.example_id``, so a task is never imported twice and an
annotation already in the store is never returned again. Label Studio accepts several things
silently; this module handles them: a label that is not in the class list is reported and
skipped (and the task's overlap is raised so someone else answers), the latest of two annotations
by one user on one task wins, a deleted task is imported again once (a second deletion marks the
request exhausted). Connection errors and 5xx answers are retried with exponential backoff; a
wrong token fails at once. Both raise :class:`~activelab_lightning.errors.OracleUnavailable`;
nothing stored is lost and re-running the same command resumes.

The API token is read from the environment (``LABEL_STUDIO_API_KEY`` by default) and never
logged or shown in errors or ``repr``. Legacy tokens (``Authorization: Token``) and personal
access tokens (JWT refresh tokens, exchanged for short-lived ``Bearer`` tokens) both work.
"""

from __future__ import annotations

import base64
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from activelab_lightning.oracles._label_studio_client import (
    LabelStudioClient,
    LabelStudioError,
    LabelStudioNotFound,
)
from activelab_lightning.oracles._tasks import (
    FROM_NAME,
    AnswerProblem,
    choice_of,
    config_choices,
    display_fields,
    example_value,
    is_image,
    label_config,
    png_bytes,
    stored_labels,
    task_for_request,
)
from activelab_lightning.oracles.base import BaseOracle, class_name_tuple
from activelab_lightning.records import Annotation, LabelRequest, OracleResponse

__all__ = ["LabelStudioClient", "LabelStudioError", "LabelStudioOracle", "label_config"]

log = logging.getLogger(__name__)

#: ``system`` names used with ``AnnotationStore.set_external_id``.
SYSTEM = "label_studio"
SYSTEM_DELETED = "label_studio_deleted"


class LabelStudioOracle(BaseOracle):
    """Ask real annotators through a Label Studio project.

    Args:
        class_names: The ``K`` class names (the project's choices).
        url: Server address; default ``$LABEL_STUDIO_URL`` (see ``url_env``).
        url_env: Environment variable holding the address.
        api_key_env: Environment variable holding the API token (legacy token or personal access
            token). The token is only ever read from the environment.
        project_title: Title of the project to reuse or create (one project per store).
        project_id: Use this existing project instead of looking one up by title.
        data_type: ``"text"`` (the example is shown as text) or ``"image"`` (image tensors are
            sent as PNG data URLs; strings are used as image URLs).
        show_fn: ``show_fn(example_id) -> value`` giving what annotators see; default the bound
            dataset's ``dataset[example_id][0]``.
        store: The :class:`~activelab_lightning.store.AnnotationStore` (task ids are recorded in
            it; answers already stored are not returned again). Can be given later via :meth:`bind`.
        num_examples: Size of the example id space, if no store is bound.
        poll_interval: Seconds between two looks at the project while waiting.
        timeout: Seconds to wait for the round's answers in one call; ``0`` looks once and returns
            (the loop then stops with "waiting for N labels" and the same command resumes).
        request_timeout: Seconds per HTTP request.
        retries: Extra attempts per HTTP request after connection errors / 5xx answers.
        backoff: First retry delay in seconds (doubles each attempt).
        sleep: Sleep function (tests pass a fake).

    Attributes:
        problems: Annotations of the latest call that were not used (label not in the class list,
            second label by the same annotator), as ``AnswerProblem(task URL, task id, reason)``.

    Example::

        >>> import os
        >>> os.environ.setdefault("LABEL_STUDIO_API_KEY", "0123456789abcdef")  # doctest: +SKIP
        >>> oracle = LabelStudioOracle(["cat", "dog"], url="http://127.0.0.1:8080", timeout=600)  # doctest: +SKIP
    """

    def __init__(
        self,
        class_names: Sequence[str],
        *,
        url: str | None = None,
        url_env: str = "LABEL_STUDIO_URL",
        api_key_env: str = "LABEL_STUDIO_API_KEY",
        project_title: str = "activelab",
        project_id: int | None = None,
        data_type: Literal["text", "image"] = "text",
        show_fn: Callable[[int], Any] | None = None,
        store: Any = None,
        num_examples: int | None = None,
        poll_interval: float = 10.0,
        timeout: float = 0.0,
        request_timeout: float = 30.0,
        retries: int = 4,
        backoff: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        names = class_name_tuple(class_names)
        super().__init__("label_studio", num_examples=num_examples, num_classes=len(names))
        self.class_names = names
        url = url or os.environ.get(url_env, "")
        if not url:
            raise ValueError(f"url is not set: pass url=... or set ${url_env} (e.g. http://127.0.0.1:8080)")
        token = os.environ.get(api_key_env, "")
        if not token:
            raise ValueError(
                f"api token missing: set ${api_key_env} to your Label Studio token "
                "(Account & Settings > Access Token); it is read from the environment only"
            )
        if data_type not in ("text", "image"):
            raise ValueError(f"data_type must be 'text' or 'image', got {data_type!r}")
        if poll_interval <= 0 or timeout < 0:
            raise ValueError(f"need poll_interval > 0 and timeout >= 0, got {poll_interval} and {timeout}")
        if show_fn is not None and not callable(show_fn):
            raise TypeError(f"show_fn must be callable(example_id) -> value, got {type(show_fn).__name__}")
        self.client = LabelStudioClient(
            url,
            token,
            token_source=f"the token in ${api_key_env}",
            timeout=request_timeout,
            retries=retries,
            backoff=backoff,
            sleep=sleep,
        )
        self.project_title = str(project_title)
        self._project_id = int(project_id) if project_id is not None else None
        self._model_version: str | None = None
        self.data_type = data_type
        self.show_fn = show_fn
        self.poll_interval = float(poll_interval)
        self.timeout = float(timeout)
        self._sleep = sleep
        self.store: Any = None
        self.dataset: Any = None
        self.problems: list[AnswerProblem] = []
        self._task_ids: dict[str, int] = {}  # request_id -> task id (mirror of the store)
        self._deleted: dict[str, int] = {}  # request_id -> a task id that was deleted
        self._given: dict[tuple[int, str], int] = {}
        if store is not None:
            self.bind(store=store)

    def __repr__(self) -> str:
        return (
            f"LabelStudioOracle(url={self.client.url!r}, project={self._project_id or self.project_title!r}, "
            f"classes={list(self.class_names)}, token=<redacted>)"
        )

    # ------------------------------------------------------------------ wiring
    def bind(self, *, store: Any = None, datamodule: Any = None) -> None:
        """Give the oracle the run's store and data (called by the loop / callback before a round)."""
        if store is not None:
            stored = tuple(str(c) for c in getattr(store, "class_names", self.class_names))
            if stored != self.class_names:
                raise ValueError(
                    f"class_names {list(self.class_names)} differ from the store's {list(stored)}; "
                    "give the oracle the same class list as the store"
                )
            self.store = store
            self.num_examples = int(store.num_examples)
        if datamodule is not None and getattr(datamodule, "dataset", None) is not None:
            self.dataset = datamodule.dataset
            if self.num_examples is None and hasattr(self.dataset, "__len__"):
                self.num_examples = len(self.dataset)

    @property
    def project_id(self) -> int:
        """The Label Studio project id (found by title or created on first use)."""
        if self._project_id is None:
            self._project_id = self._find_or_create_project()
        return self._project_id

    @property
    def where(self) -> str:
        """The project's address (for :class:`~activelab_lightning.errors.WaitingForLabels`)."""
        if self._project_id is None:
            return f"{self.client.url} (project {self.project_title!r})"
        return f"{self.client.url}/projects/{self._project_id}/data"

    # ------------------------------------------------------------------ project
    def _check_config(self, project: Mapping[str, Any]) -> None:
        choices = config_choices(str(project.get("label_config", "")))
        if choices is None or set(choices) != set(self.class_names):
            raise ValueError(
                f"Label Studio project {project.get('id')} ({project.get('title')!r}) has choices {choices} under "
                f'<Choices name="{FROM_NAME}">, but class_names is {list(self.class_names)}; use another '
                "project_title or fix the project's labeling config"
            )
        self._model_version = project.get("model_version") or None

    def _find_or_create_project(self) -> int:
        if self._project_id is not None:
            try:
                project = self.client.call("GET", f"/api/projects/{self._project_id}/")
            except LabelStudioNotFound:
                raise ValueError(
                    f"project_id={self._project_id}: no such project on {self.client.url}"
                ) from None
            self._check_config(project)
            return int(project["id"])
        found = [p for p in self.client.list_all("/api/projects/") if p.get("title") == self.project_title]
        if found:
            project = min(found, key=lambda p: int(p["id"]))
            full = self.client.call("GET", f"/api/projects/{project['id']}/")
            self._check_config(full)
            return int(full["id"])
        project = self.client.call(
            "POST",
            "/api/projects/",
            body={
                "title": self.project_title,
                "description": "Label requests from activelab_lightning (ActiveLab scores: lowest = most useful).",
                "label_config": label_config(self.class_names, self.data_type),
                "maximum_annotations": 1,
                "sampling": "Uncertainty sampling",
                "show_collab_predictions": False,
                "model_version": "activelab-r0",
            },
        )
        self._model_version = "activelab-r0"
        log.info("created Label Studio project %s (%r)", project["id"], self.project_title)
        return int(project["id"])

    def _set_model_version(self, round: int) -> None:
        version = f"activelab-r{int(round)}"
        if self._model_version != version:
            try:
                self.client.call(
                    "PATCH", f"/api/projects/{self.project_id}/", body={"model_version": version}
                )
            except LabelStudioError as err:  # ordering only; the answers do not depend on it
                log.warning(
                    "could not set the project's model_version to %s (%s); Label Studio keeps serving "
                    "tasks by the previous round's scores",
                    version,
                    err,
                )
                return
            self._model_version = version

    # ------------------------------------------------------------------ display
    def _task_data(self, request: LabelRequest) -> dict[str, Any]:
        eid = int(request.example_id)
        value = example_value(self.show_fn, self.dataset, eid)
        if self.data_type == "image":
            if is_image(value):
                url = "data:image/png;base64," + base64.b64encode(png_bytes(value)).decode("ascii")
                fields: dict[str, Any] = {"image": url}
            elif isinstance(value, Mapping):
                fields = display_fields(value, images_dir=None, name="")
            else:
                fields = {
                    "image": ""
                    if value is None
                    else os.fspath(value)
                    if isinstance(value, os.PathLike)
                    else str(value)
                }
        else:
            fields = display_fields(value, images_dir=None, name="")
            fields.setdefault("text", fields.get("path") or f"example {eid}")
        task = task_for_request(request, self.class_names, fields)
        return task

    # ------------------------------------------------------------------ the round
    def _answer(self, requests: tuple[LabelRequest, ...]) -> OracleResponse:
        pid = self.project_id
        deadline = time.monotonic() + self.timeout
        waited = 0.0  # sleeps so far: ends the wait even when ``sleep`` is a test's fake
        synced = False
        while True:
            tasks = self.client.tasks(pid)
            if not synced:
                exhausted, changed = self._sync(requests, tasks)
                synced = True
                # after the import: Label Studio refuses a model_version that no prediction carries
                self._set_model_version(max(int(r.round) for r in requests))
                if changed:
                    tasks = self.client.tasks(pid)
            annotations, problems = self._collect(requests, tasks, exhausted)
            answered = {a.request_id for a in annotations}
            pending = tuple(r for r in requests if r.request_id not in answered and r not in exhausted)
            self._fix_overlaps(pending, tasks)
            left = min(deadline - time.monotonic(), self.timeout - waited)
            if not pending or left <= 0:
                break
            delay = min(self.poll_interval, left)
            self._sleep(delay)
            waited += delay
        self.problems = problems
        if problems:
            log.warning("%d Label Studio annotation(s) not used; first: %s", len(problems), problems[0])
        for a in annotations:
            self._given[(a.example_id, a.annotator_id)] = a.label
        return OracleResponse(annotations=tuple(annotations), pending=pending, exhausted=tuple(exhausted))

    def _known_task_ids(self) -> dict[str, int]:
        if self.store is not None:
            for rid, tid in self.store.external_ids(SYSTEM).items():
                self._task_ids[rid] = int(tid)
            for rid, tid in self.store.external_ids(SYSTEM_DELETED).items():
                self._deleted[rid] = int(tid)
        return self._task_ids

    def _record(self, request_id: str, task_id: int, *, replace: bool = False) -> None:
        if self.store is not None:
            self.store.set_external_id(request_id, SYSTEM, str(task_id), replace=replace)
        self._task_ids[request_id] = int(task_id)

    def _sync(
        self, requests: tuple[LabelRequest, ...], tasks: list[dict[str, Any]]
    ) -> tuple[list[LabelRequest], bool]:
        """Match requests to tasks, import missing / deleted ones; return (exhausted, tasks changed)."""
        known = self._known_task_ids()
        existing = {int(t["id"]) for t in tasks}
        by_example: dict[int, int] = {}
        for t in sorted(tasks, key=lambda t: int(t["id"])):
            eid = (t.get("data") or {}).get("example_id")
            if eid is not None:
                by_example.setdefault(int(eid), int(t["id"]))
        to_import: list[LabelRequest] = []
        followers: list[LabelRequest] = []
        exhausted: list[LabelRequest] = []
        changed = False
        for r in requests:
            rid, eid = r.request_id, int(r.example_id)
            tid = known.get(rid)
            if tid is not None and tid in existing:
                continue
            if tid is not None:  # recorded, but the task is gone from the project
                if rid in self._deleted:
                    log.warning(
                        "Label Studio task %s of request %s was deleted twice; marking it exhausted", tid, rid
                    )
                    exhausted.append(r)
                    continue
                if self.store is not None:
                    self.store.set_external_id(rid, SYSTEM_DELETED, str(tid))
                self._deleted[rid] = tid
                if eid in by_example and by_example[eid] != tid:
                    self._record(rid, by_example[eid], replace=True)
                    continue
                log.warning("Label Studio task %s of request %s was deleted; importing it again", tid, rid)
                to_import.append(r)
                continue
            if eid in by_example:  # the example's task exists (earlier round or an import before a crash)
                changed |= self._reuse_task(r, next(t for t in tasks if int(t["id"]) == by_example[eid]))
                continue
            if any(int(q.example_id) == eid for q in to_import):
                followers.append(r)  # the example is pending in two rounds: one task serves both
                continue
            to_import.append(r)
        if to_import:
            payload = [self._task_data(r) for r in to_import]
            answer = self.client.call(
                "POST",
                f"/api/projects/{self.project_id}/import",
                params={"return_task_ids": "true"},
                body=payload,
            )
            ids = list((answer or {}).get("task_ids") or [])
            if len(ids) != len(to_import):
                raise LabelStudioError(
                    f"Label Studio imported {len(ids)} task ids for {len(to_import)} tasks; "
                    "re-run: the next call matches tasks by their data.example_id"
                )
            imported = {}
            for r, tid in zip(to_import, ids):
                self._record(r.request_id, int(tid), replace=r.request_id in self._deleted)
                imported[int(r.example_id)] = int(tid)
            for r in followers:
                self._record(r.request_id, imported[int(r.example_id)], replace=r.request_id in self._deleted)
        return exhausted, bool(to_import) or changed

    def _reuse_task(self, request: LabelRequest, task: Mapping[str, Any]) -> bool:
        """Point an example's existing task at a new request (this round's score and data); True if changed."""
        tid = int(task["id"])
        data = dict(task.get("data") or {})
        changed = data.get("request_id") != request.request_id
        if changed:
            fresh = self._task_data(request)
            self.client.call("POST", "/api/predictions/", body={"task": tid, **fresh["predictions"][0]})
            data.update({k: v for k, v in fresh["data"].items() if k not in ("text", "image", "path")})
            self.client.call("PATCH", f"/api/tasks/{tid}/", body={"data": data})
        self._record(request.request_id, tid)
        return changed

    def _collect(
        self, requests: tuple[LabelRequest, ...], tasks: list[dict[str, Any]], exhausted: list[LabelRequest]
    ) -> tuple[list[Annotation], list[AnswerProblem]]:
        by_id = {int(t["id"]): t for t in tasks}
        by_example: dict[int, list[dict[str, Any]]] = {}
        for t in tasks:
            eid = (t.get("data") or {}).get("example_id")
            if eid is not None:
                by_example.setdefault(int(eid), []).append(t)
        stored = stored_labels(self.store, self._given, (int(r.example_id) for r in requests))
        annotations: list[Annotation] = []
        problems: list[AnswerProblem] = []
        emitted: set[tuple[int, str]] = set()  # one answer per (example, annotator), to the earliest request
        for r in sorted(requests, key=lambda r: int(r.round)):
            if r in exhausted:
                continue
            eid = int(r.example_id)
            own = by_id.get(self._task_ids.get(r.request_id, -1))
            candidates = by_example.get(eid, []) + (
                [own] if own is not None and own not in by_example.get(eid, []) else []
            )
            latest: dict[str, tuple[str, int, dict[str, Any]]] = {}
            for t in candidates:
                for a in t.get("annotations") or []:
                    if a.get("was_cancelled"):
                        continue
                    user = self.client.user_name(a.get("completed_by"))
                    stamp = str(a.get("updated_at") or a.get("created_at") or "")
                    previous = latest.get(user)
                    if previous is not None:
                        problems.append(
                            AnswerProblem(
                                f"{self.client.url}/projects/{self.project_id}/data?task={t['id']}",
                                int(t["id"]),
                                f"{user} annotated example {eid} more than once; the latest annotation counts",
                            )
                        )
                        if (previous[0], previous[1]) > (stamp, int(a.get("id", 0))):
                            continue
                    latest[user] = (stamp, int(a.get("id", 0)), {**a, "_task": t["id"]})
            for user, (_, _, a) in latest.items():
                where = f"{self.client.url}/projects/{self.project_id}/data?task={a['_task']}"
                choice = choice_of(a)
                if choice is None or choice not in self.class_names:
                    problems.append(
                        AnswerProblem(
                            where,
                            int(a["_task"]),
                            (
                                f"{user}'s annotation {a.get('id')} of example {eid} has label {choice!r}, which is not in "
                                f"the class list {list(self.class_names)}; it is not used"
                            ),
                        )
                    )
                    continue
                label = self.class_names.index(choice)
                key = (eid, user)
                if key in stored:
                    if stored[key] != label:
                        problems.append(
                            AnswerProblem(
                                where,
                                int(a["_task"]),
                                (
                                    f"{user} changed example {eid} to {choice!r} in Label Studio, but the store already holds "
                                    f"{self.class_names[stored[key]]!r} from them; the stored label is kept"
                                ),
                            )
                        )
                    continue
                if user in r.existing_annotators or key in emitted:
                    continue
                emitted.add(key)
                annotations.append(
                    Annotation(
                        example_id=eid,
                        annotator_id=user,
                        label=label,
                        round=int(r.round),
                        source=self.source,
                        request_id=r.request_id,
                    )
                )
        return annotations, problems

    def _fix_overlaps(self, pending: tuple[LabelRequest, ...], tasks: list[dict[str, Any]]) -> None:
        """Make room for one more annotator on every pending request's task."""
        by_id = {int(t["id"]): t for t in tasks}
        for r in pending:
            task = by_id.get(self._task_ids.get(r.request_id, -1))
            if task is None:
                continue
            done = len(task.get("annotations") or [])
            overlap = int(task.get("overlap") or 0)
            if overlap < done + 1 or task.get("is_labeled"):
                # Label Studio does not recompute ``is_labeled`` when the overlap changes: reset it too.
                try:
                    self.client.call(
                        "PATCH",
                        f"/api/tasks/{task['id']}/",
                        body={"overlap": max(overlap, done + 1), "is_labeled": False},
                    )
                except LabelStudioNotFound:
                    continue  # deleted meanwhile: the next call imports it again
                task["overlap"], task["is_labeled"] = max(overlap, done + 1), False
