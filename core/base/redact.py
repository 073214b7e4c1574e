"""Keeps secrets (the database and Redis passwords) out of every log line, error, report and stats file.

Text that is shown is masked; data is not: a dead letter's item is written as it is (its error is masked), so
a replay runs the very item that failed. A secret of MIN_ANYWHERE characters or more is masked wherever it
appears, in every form it can be printed in (as given, URL-encoded, decoded, escaped in JSON or a repr). A
shorter one would mangle ordinary words and numbers if masked everywhere, so it is masked only where it stands
as a password: a URL's password field (`://user:PW@`, `:PW@`) and the value of a password key (`password=PW`,
`PASSWORD: 'PW'`, `"password": "PW"`). The password field of any URL is masked, registered or not.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from typing import Any
from urllib.parse import quote, unquote, urlsplit

MASK = "***"
MIN_ANYWHERE = 3  # a secret this long or longer is masked wherever it appears

#: A URL's password field: what stands between `scheme://user:` and `@`.
URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/?#@\[\]]*:)([^\s/?#@\[\]]+)(?=@)")
#: Where a value is known to be a password: after a password key, or between `:` and `@` (user:PW@host).
PASSWORD_KEY = r"(?i:pass(?:word|wd)?|pwd)['\"]?\s*[=:]\s*['\"]?"
AFTER_VALUE = r"(?=$|[\s'\",;&)}\]@/])"

_lock = threading.Lock()
_anywhere: set[str] = set()
_short: set[str] = set()
_anywhere_pattern: re.Pattern[str] | None = None
_short_pattern: re.Pattern[str] | None = None


def register_secret(value: str | None) -> None:
    """Remember a value that must never be printed, in each form it can be printed in."""
    if not value:
        return
    global _anywhere_pattern, _short_pattern
    with _lock:
        for form in _forms(value):
            (_anywhere if len(form) >= MIN_ANYWHERE else _short).add(form)
        # Longest first, so a secret that contains another is masked whole.
        _anywhere_pattern = _alternation(_anywhere)
        if _short:
            _short_pattern = re.compile(
                f"(?<=:){_alternation_text(_short)}(?=@)|({PASSWORD_KEY}){_alternation_text(_short)}{AFTER_VALUE}"
            )


def register_url_password(url: str | None) -> None:
    """Remember the password of `url` (written URL-encoded there), in its encoded and decoded forms."""
    password = urlsplit(url).password if url else None
    if password:
        register_secret(password)
        register_secret(unquote(password))


def redact(text: str) -> str:
    """`text` with every registered secret, and the password field of every URL, replaced by ***."""
    anywhere, short = _anywhere_pattern, _short_pattern
    if anywhere is not None:
        text = anywhere.sub(MASK, text)
    if short is not None:
        text = short.sub(lambda match: (match.group(1) or "") + MASK, text)
    if "://" in text:
        text = URL_PASSWORD.sub(lambda match: match.group(1) + MASK, text)
    return text


def redact_data(value: Any) -> Any:
    """`value` (JSON-like: dicts, lists, strings, numbers) with every string in it redacted, keys included:
    masking the values before they are written keeps the JSON valid and catches a secret JSON would escape."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_data(key): redact_data(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_data(item) for item in value]
    return value


class RedactingFormatter(logging.Formatter):
    """Formats as usual, tracebacks included, then masks secrets in the finished line."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def _forms(value: str) -> set[str]:
    """The ways `value` can appear in text: as is, URL-encoded (as in a URL), and escaped by JSON or repr()."""
    forms = {value, quote(value, safe="")}
    for form in list(forms):
        forms.add(json.dumps(form, ensure_ascii=False)[1:-1])
        forms.add(json.dumps(form)[1:-1])
        forms.add(repr(form)[1:-1])
    return {form for form in forms if form}


def _alternation_text(values: set[str]) -> str:
    return "(?:" + "|".join(re.escape(value) for value in sorted(values, key=len, reverse=True)) + ")"


def _alternation(values: set[str]) -> re.Pattern[str] | None:
    return re.compile(_alternation_text(values)) if values else None
