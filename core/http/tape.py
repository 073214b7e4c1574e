"""Recorded HTTP: with --record-http DIR each answer the run's HTTP clients get is written into a cassette in DIR;
with --offline DIR every request is answered from DIR's cassettes of the pipeline, and nothing is sent.

A cassette is a JSON-lines file: a header line ({"cassette": 1, "pipeline": NAME, "recording": ID, ...}), then one
line per answer ({"method", "url", "status", "reason", "headers": [[name, value], ...], and "body" as text,
"body_base64", or "body_file", a file beside the cassette}). Each process of a recording writes its own, line by
line, so a recording killed half-way keeps what it got. What is secret is left out: request headers (cookies,
Authorization) are never written, a Set-Cookie keeps its name and attributes but not its value, query parameters
such as crumb= or api_key= are dropped from the URL, and a body the worker calls secret (a token) is "REDACTED".

Replaying, an answer is found by method and URL (those parameters dropped); the answers recorded for one URL are
given in their order (a 429 with Retry-After, then the 200 its retry got), the last one again once they run out.
When a folder holds several recordings of a pipeline, the newest is used. The process's tape comes from the
environment (set by the command line before any worker starts), so threads, asyncio and worker processes share it.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


class Plan(Protocol):
    """What replaying needs of a request's plan (core.http.policy.RequestPlan): the errors that end the item."""

    def give_up(self, what: str, *, whole: bool = False) -> Exception: ...

    def too_large(self, what: str) -> Exception: ...


RECORD_ENV = "PIPELINE_RECORD_HTTP"  # the folder a recording writes into
OFFLINE_ENV = "PIPELINE_OFFLINE_HTTP"  # the folder an offline run answers from
NAME_ENV = "PIPELINE_HTTP_NAME"  # the pipeline whose cassettes they are (its file's name, without .yaml)
RECORDING_ENV = "PIPELINE_HTTP_RECORDING"  # the recording's id: the processes of one run write one recording

#: Query parameters that carry a secret or a session token: never written, and not compared when replaying.
SECRET_PARAMS = frozenset(
    {"crumb", "token", "access_token", "api_key", "apikey", "key", "password", "secret", "signature", "sig", "auth"}
)
#: Headers of an answer not written: the body is kept as read (decoded, whole), so these would no longer be true.
UNKEPT_HEADERS = frozenset({"content-encoding", "transfer-encoding", "content-length", "connection", "keep-alive"})
REDACTED = "REDACTED"
SUFFIX = ".jsonl"


class CassetteError(Exception):
    """A cassette that cannot be read; the message names the file and the line."""


@dataclass(frozen=True)
class Answer:
    """A recorded answer."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


def key_of(method: str, url: str) -> str:
    """What an answer is found by: the method and the URL without its secret parameters."""
    parts = urlsplit(url)
    if not parts.query:
        return f"{method.upper()} {url}"
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() not in SECRET_PARAMS]
    return f"{method.upper()} {urlunsplit(parts._replace(query=urlencode(kept)))}"


def shown_url(url: str) -> str:
    """The URL as a cassette or a message shows it: its secret parameters left out."""
    return key_of("GET", url)[4:]


def header(name: str | list[str], recording: str, *, started: str, **more: Any) -> dict[str, Any]:
    """A cassette's first line: whose it is (the pipeline), which recording, when; `more` such as host or note."""
    return {"cassette": 1, "pipeline": name, "recording": recording, "started": started, **more}


def answer_line(
    method: str, url: str, status: int, reason: str, headers: Iterable[tuple[str, str]], body: bytes
) -> dict[str, Any]:
    """One answer as a cassette line: its body as text, or as base64 when it is not UTF-8."""
    line: dict[str, Any] = {"method": method.upper(), "url": url, "status": status, "reason": reason or ""}
    line["headers"] = [[name, value] for name, value in headers]
    try:
        line["body"] = body.decode("utf-8")
    except UnicodeDecodeError:
        line["body_base64"] = base64.b64encode(body).decode("ascii")
    return line


def write_cassette(path: Path, head: dict[str, Any], answers: Iterable[dict[str, Any]]) -> None:
    """A whole cassette at once (a test's answers, the demo's): `head` from header(), then the answer lines."""
    lines = [head, *answers]
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")


class Recorder:
    """Writes this process's answers into its own cassette in `folder`, a line each, as they come."""

    def __init__(self, folder: Path, name: str, recording: str) -> None:
        self.folder, self.name, self.recording = folder, name, recording
        self.path = folder / f"{name}.{recording}.{socket.gethostname()}-{os.getpid()}{SUFFIX}"
        self._lock = threading.Lock()
        self._file: Any = None

    def record(
        self,
        method: str,
        url: str,
        status: int,
        reason: str,
        headers: Iterable[tuple[str, str]],
        body: bytes,
        *,
        secret: bool = False,
    ) -> None:
        """Write one answer (what is secret left out)."""
        kept = [(k, _kept_value(k, v)) for k, v in headers if k.lower() not in UNKEPT_HEADERS]
        line = answer_line(method, shown_url(url), status, reason, kept, REDACTED.encode() if secret else body)
        text = json.dumps(line, ensure_ascii=False) + "\n"
        with self._lock:
            if self._file is None:
                self.folder.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("a", encoding="utf-8")
                started = datetime.now(UTC).isoformat(timespec="seconds")
                head = header(self.name, self.recording, started=started, host=socket.gethostname(), pid=os.getpid())
                self._file.write(json.dumps(head) + "\n")
            self._file.write(text)
            self._file.flush()


class Player:
    """Answers requests from recorded answers; thread-safe. `sources` are the cassettes they came from."""

    def __init__(self, answers: dict[str, list[Answer]], sources: list[Path], folder: Path, note: str = "") -> None:
        self.answers, self.sources, self.folder, self.note = answers, sources, folder, note
        self._next: dict[str, int] = {}
        self._lock = threading.Lock()

    def answer(self, method: str, url: str) -> Answer | None:
        """The next recorded answer to `method url` (the last one again once they run out); None if none is."""
        key = key_of(method, url)
        answers = self.answers.get(key)
        if not answers:
            return None
        with self._lock:
            index = self._next.get(key, 0)
            self._next[key] = index + 1
        return answers[min(index, len(answers) - 1)]

    def count(self) -> int:
        """How many answers were recorded."""
        return sum(len(answers) for answers in self.answers.values())


def replayed(player: Player, url: str, plan: Plan, max_body_bytes: int) -> Answer:
    """The recorded answer to GET `url` for a try of `plan`, or its error: never a network call."""
    answer = player.answer("GET", url)
    if answer is None:
        raise plan.give_up(f"not recorded: GET {shown_url(url)} (no answer to it in {player.folder})", whole=True)
    if len(answer.body) > max_body_bytes:
        raise plan.too_large(f"{len(answer.body)} bytes recorded")
    return answer


def recordings(folder: Path) -> dict[str, dict[str, list[tuple[Path, dict[str, Any]]]]]:
    """The cassettes in `folder` by pipeline, then by recording: (path, header) each. CassetteError for a file
    ending in .jsonl whose first line is not a cassette's header."""
    found: dict[str, dict[str, list[tuple[Path, dict[str, Any]]]]] = {}
    for path in sorted(folder.glob(f"*{SUFFIX}")):
        with path.open(encoding="utf-8") as file:
            first = file.readline()
        header = _json_line(path, 1, first)
        names = header.get("pipeline") if isinstance(header, dict) and header.get("cassette") == 1 else None
        names = [names] if isinstance(names, str) else names
        if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
            raise CassetteError(f'{path}:1: not a cassette: its first line is not {{"cassette": 1, "pipeline": ...}}')
        recording = str(header.get("recording", path.name))
        for name in names:  # a cassette may serve several pipeline files (the demo: the project's and the course's)
            found.setdefault(name, {}).setdefault(recording, []).append((path, header))
    return found


def load(folder: Path, name: str) -> Player:
    """The newest recording of pipeline `name` in `folder`, as a Player; CassetteError if there is none."""
    found = recordings(folder)
    if name not in found:
        others = ", ".join(sorted(found)) or "none"
        raise CassetteError(
            f"{folder}: no cassette of the pipeline {name!r} (cassettes there are of: {others}); "
            f"record one with --record-http {folder}"
        )
    newest = max(found[name].values(), key=lambda cassettes: max(str(h.get("started", "")) for _, h in cassettes))
    answers: dict[str, list[Answer]] = {}
    notes = []
    for path, header in newest:
        if header.get("note"):
            notes.append(str(header["note"]))
        with path.open(encoding="utf-8") as file:
            for number, text in enumerate(file, 1):
                if number > 1 and text.strip():
                    method, url, answer = _answer(path, number, _json_line(path, number, text))
                    answers.setdefault(key_of(method, url), []).append(answer)
    return Player(answers, [path for path, _ in newest], folder, note=" ".join(dict.fromkeys(notes)))


def _json_line(path: Path, number: int, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CassetteError(f"{path}:{number}: not a JSON line ({exc})") from None


def _answer(path: Path, number: int, line: Any) -> tuple[str, str, Answer]:
    where = f"{path}:{number}"
    if not isinstance(line, dict):
        raise CassetteError(f"{where}: an answer is a JSON object")
    method, url, status = line.get("method", "GET"), line.get("url"), line.get("status")
    if not isinstance(url, str) or not url:
        raise CassetteError(f"{where}: url: missing (the URL this answers)")
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise CassetteError(f"{where}: status: must be an HTTP status (100-599), got {status!r}")
    headers = line.get("headers", [])
    if not isinstance(headers, list) or not all(
        isinstance(h, list) and len(h) == 2 and all(isinstance(x, str) for x in h) for h in headers
    ):
        raise CassetteError(f"{where}: headers: must be a list of [name, value] pairs of text")
    pairs = tuple((name, value) for name, value in headers)
    return str(method), url, Answer(status, str(line.get("reason", "")), pairs, _body(where, path, line))


def _body(where: str, path: Path, line: dict[str, Any]) -> bytes:
    if isinstance(line.get("body"), str):
        return str(line["body"]).encode("utf-8")
    if isinstance(line.get("body_base64"), str):
        try:
            return base64.b64decode(line["body_base64"], validate=True)
        except ValueError as exc:
            raise CassetteError(f"{where}: body_base64: not base64 ({exc})") from None
    if isinstance(line.get("body_file"), str):
        file = path.parent / line["body_file"]
        try:
            return file.read_bytes()
        except OSError as exc:
            raise CassetteError(f"{where}: body_file: cannot read {file} ({exc.strerror})") from None
    if any(key in line for key in ("body", "body_base64", "body_file")):
        raise CassetteError(f"{where}: body, body_base64 and body_file are text")
    return b""


def _kept_value(name: str, value: str) -> str:
    """A header's value as written: a cookie's value left out, its name and attributes kept."""
    if name.lower() not in ("set-cookie", "set-cookie2"):
        return value
    first, _, rest = value.partition(";")
    cookie = first.split("=", 1)[0].strip()
    return f"{cookie}={REDACTED}" + (f";{rest}" if rest else "")


_tape: tuple[tuple[Any, ...], Recorder | Player | None] | None = None
_tape_lock = threading.Lock()


def tape() -> Recorder | Player | None:
    """This process's tape, from the environment: a Recorder, a Player, or None (the network as usual)."""
    global _tape
    settings = (os.getpid(), os.environ.get(RECORD_ENV), os.environ.get(OFFLINE_ENV), os.environ.get(NAME_ENV))
    made = _tape
    if made is not None and made[0] == settings:
        return made[1]
    with _tape_lock:
        if _tape is None or _tape[0] != settings:
            _, record, offline, name = settings
            current: Recorder | Player | None = None
            if offline and name:
                current = load(Path(offline), name)
            elif record and name:
                current = Recorder(Path(record), name, os.environ.get(RECORDING_ENV) or str(os.getpid()))
            _tape = (settings, current)
        return _tape[1]
