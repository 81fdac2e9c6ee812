"""A small Label Studio REST client (standard library ``urllib`` only) with retries and token handling.

Connection errors, timeouts and 429 / 5xx answers are retried with exponential backoff; a refused
token fails at once. Both raise :class:`~activelab_lightning.errors.OracleUnavailable`; any other
4xx answer raises :class:`LabelStudioError`. Legacy tokens (``Authorization: Token``) and personal
access tokens (JWT refresh tokens, exchanged for short-lived ``Bearer`` tokens) both work, and
the token is never logged or shown in errors or ``repr``.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from http.client import HTTPException
from typing import Any

from activelab_lightning.errors import ActiveLabError, OracleUnavailable

__all__ = ["LabelStudioClient", "LabelStudioError", "LabelStudioNotFound"]

# Retries are logged as the Label Studio backend, where users look for them.
log = logging.getLogger("activelab_lightning.oracles.label_studio")

_RETRY_STATUS = (429, 500, 502, 503, 504)


class LabelStudioError(ActiveLabError):
    """Label Studio answered a request with an error that retrying will not fix (a 4xx)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class LabelStudioNotFound(LabelStudioError):
    """Label Studio answered 404: the project or task does not exist (any more)."""


def _is_jwt(token: str) -> bool:
    parts = token.split(".")
    return len(parts) == 3 and token.startswith("eyJ")


def _detail(body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        return text[:200] if not text.lstrip().startswith("<") else "(HTML error page)"
    if isinstance(parsed, dict):
        parts = [str(parsed[k]) for k in ("detail", "validation_errors", "message", "error") if parsed.get(k)]
        if parts:
            return "; ".join(parts)[:400]
    return str(parsed)[:300]


class LabelStudioClient:
    """A small Label Studio REST client with retries (``urllib`` only).

    Args:
        url: Server address, e.g. ``http://127.0.0.1:8080``.
        token: A legacy API token or a personal access token (never shown anywhere).
        token_source: How to name the token in error messages (e.g. ``"$LABEL_STUDIO_API_KEY"``).
        timeout: Seconds per HTTP request.
        retries: Extra attempts after a connection error, a timeout or a 429 / 5xx answer.
        backoff: First retry delay in seconds; it doubles with each attempt (capped at 30 s).
        sleep: The sleep function (tests pass a fake).
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        token_source: str = "the API token",
        timeout: float = 30.0,
        retries: int = 4,
        backoff: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {url!r}")
        if retries < 0 or backoff < 0 or timeout <= 0:
            raise ValueError(
                f"need retries >= 0, backoff >= 0, timeout > 0; got {retries}, {backoff}, {timeout}"
            )
        self.url = url.rstrip("/")
        self.__token = token
        self.token_source = token_source
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self._sleep = sleep
        self._access: str | None = None
        self._access_expires = 0.0
        self._users: dict[int, str] = {}  # user id -> e-mail (or name)

    def __repr__(self) -> str:
        return f"LabelStudioClient(url={self.url!r}, token=<redacted>)"

    def _auth(self, refresh: bool = False) -> str:
        if not _is_jwt(self.__token):
            return f"Token {self.__token}"
        if refresh or self._access is None or time.monotonic() > self._access_expires:
            answer = self._send("POST", "/api/token/refresh/", body={"refresh": self.__token}, auth=None)
            self._access = str(answer["access"])
            self._access_expires = time.monotonic() + 240.0
        return f"Bearer {self._access}"

    def call(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None, body: Any = None
    ) -> Any:
        """One API call; returns the decoded JSON answer (None for an empty body).

        Raises:
            OracleUnavailable: The server cannot be reached after the retries, or refused the token.
            LabelStudioError: Any other 4xx answer (``status`` tells which).
        """
        try:
            return self._send(method, path, params=params, body=body, auth=self._auth())
        except OracleUnavailable as err:
            if _is_jwt(self.__token) and getattr(err, "status", None) == 401:
                return self._send(method, path, params=params, body=body, auth=self._auth(refresh=True))
            raise

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        auth: str | None,
    ) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        target = f"{self.url}{path}{query}"
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if auth is not None:
            headers["Authorization"] = auth
        reason = ""
        for attempt in range(self.retries + 1):
            if attempt:
                delay = min(30.0, self.backoff * 2 ** (attempt - 1))
                log.info(
                    "Label Studio %s %s failed (%s); retry %d/%d in %.1f s",
                    method,
                    path,
                    reason,
                    attempt,
                    self.retries,
                    delay,
                )
                self._sleep(delay)
            req = urllib.request.Request(target, data=data, headers=headers, method=method)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    raw = resp.read()
                return json.loads(raw) if raw.strip() else None
            except urllib.error.HTTPError as err:
                status, detail = err.code, _detail(err.read() or b"")
                err.close()
                if status in (401, 403):
                    hint = (
                        "check the token (Label Studio > Account & Settings); a legacy token needs "
                        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true on the server's first start"
                    )
                    exc = OracleUnavailable(
                        f"Label Studio at {self.url} refused {self.token_source} (HTTP {status}: {detail}) on "
                        f"{method} {path}; {hint}. Nothing stored was lost; re-run once the token is fixed."
                    )
                    exc.status = status  # type: ignore[attr-defined]
                    raise exc from None
                if status in _RETRY_STATUS:
                    reason = f"HTTP {status}: {detail}"
                    continue
                cls = LabelStudioNotFound if status == 404 else LabelStudioError
                raise cls(f"Label Studio {method} {path} answered HTTP {status}: {detail}", status) from None
            except (urllib.error.URLError, HTTPException, ConnectionError, TimeoutError) as err:
                reason = f"{type(err).__name__}: {getattr(err, 'reason', err)}"
                continue
        raise OracleUnavailable(
            f"Label Studio at {self.url} did not answer {method} {path} after {self.retries + 1} attempts "
            f"(last error: {reason}). Is the server running (`label-studio start`) and LABEL_STUDIO_URL right? "
            "Nothing stored was lost; re-run the same command once the server is back."
        )

    # -- paginated lists ---------------------------------------------------------------------
    def list_all(self, path: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """All items of a list endpoint, following ``page`` numbers when it is paginated."""
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            answer = self.call("GET", path, params={**(params or {}), "page": page, "page_size": 100})
            if isinstance(answer, list):
                return out + answer
            body: dict[str, Any] = answer if isinstance(answer, dict) else {}
            items = body.get("results", body.get("tasks", []))
            out += items
            if not items or not body.get("next"):
                return out
            page += 1

    def tasks(self, project_id: int) -> list[dict[str, Any]]:
        """All tasks of a project with their annotations and overlap (``GET /api/tasks``, paginated)."""
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            answer = self.call(
                "GET",
                "/api/tasks/",
                params={"project": project_id, "fields": "all", "page": page, "page_size": 500},
            )
            if isinstance(answer, list):
                return out + answer
            body: dict[str, Any] = answer if isinstance(answer, dict) else {}
            items = body.get("tasks", [])
            out += items
            if not items or len(out) >= body.get("total", 0):
                return out
            page += 1

    def user_name(self, user: Any) -> str:
        """The e-mail (else user name) of a ``completed_by`` user: an id or a user object.

        Users are listed once (``GET /api/users``) and cached; an unknown (deleted) user is named
        ``label-studio-user-<id>``.
        """
        if isinstance(user, Mapping):
            name = user.get("email") or user.get("username")
            if name:
                return str(name)
            user = user.get("id")
        uid = int(user)
        if uid not in self._users:
            for u in self.list_all("/api/users/"):
                self._users[int(u["id"])] = str(
                    u.get("email") or u.get("username") or f"label-studio-user-{u['id']}"
                )
        return self._users.setdefault(uid, f"label-studio-user-{uid}")  # a deleted user: no refetch each time
