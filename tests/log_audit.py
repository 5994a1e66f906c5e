"""A pytest plugin that fails the run when a secret or raw PII used by the tests reaches a log.

What it reads, for the whole session:
- every log record emitted in the test process (the root logger is opened down to DEBUG, so
  records nobody displays are read too), with its traceback;
- the output of gateway processes: every `*.log` file under the session's temporary directory
  (where `tests/processes.py` and the role tests send a process's stdout and stderr), and what
  `remember_output()` is handed (the captured output of `run_cli`).

What it looks for ("needles"):
- secrets: admin tokens, access tokens and secret keys the tests define (constants named
  *TOKEN*, *SECRET*, *KEY*, `"access_token": "…"` values, `GATEWAY_ADMIN_TOKEN`/`…SECRET_KEY`
  values) in `tests/` and `bench/`, and server keys the gateway hands out during the run
  (`remember_secret()`);
- raw PII: every email address written in those files (as written and lower-cased), and every
  `"phone": "…"` value (as written and as its bare digits).

At the end of the session each finding is printed (the needle is shown masked) and the run
fails. Hashes of these values are of course fine; only the raw strings count.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [*ROOT.joinpath("tests").rglob("*.py"), *ROOT.joinpath("bench").rglob("*.py")]
MIN_SECRET_LENGTH = 8
MIN_PHONE_DIGITS = 10

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_SECRET_CONSTANT = re.compile(r"^[A-Z_]*(?:TOKEN|SECRET|KEY)[A-Z_]* = \"([^\"]+)\"", re.M)
# `"access_token": "…"` in a dict, `env["GATEWAY_ADMIN_TOKEN"] = "…"` in a test.
_SECRET_FIELD = re.compile(
    r"[\"'](?:access_token|GATEWAY_ADMIN_TOKEN|GATEWAY_SECRET_KEY)[\"'](?:\s*:|\]\s*=)\s*"
    r"[\"']([^\"']+)"
)
_PHONE_FIELD = re.compile(r"[\"']phone[\"']\s*:\s*[\"']([^\"']+)[\"']")

_records: list[str] = []
_outputs: list[str] = []
_secrets: set[str] = set()
_log_dirs: list[Path] = []


def remember_secret(value: str) -> None:
    """A secret the run made (e.g. a source's server key): it must not be logged either."""
    _secrets.add(value)


def remember_output(*texts: str) -> None:
    """Captured output of a gateway process that was not written to a `*.log` file."""
    _outputs.extend(texts)


def needles() -> dict[str, str]:
    """Every string that must not appear in a log -> what it is (for the report)."""
    found: dict[str, str] = {}
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        for value in [*_SECRET_CONSTANT.findall(text), *_SECRET_FIELD.findall(text)]:
            if len(value) >= MIN_SECRET_LENGTH and not value.startswith("*"):
                found[value] = f"secret from {path.name}"
        for email in _EMAIL.findall(text):
            found[email] = found[email.lower()] = f"email from {path.name}"
        for phone in _PHONE_FIELD.findall(text):
            digits = re.sub(r"\D", "", phone)
            if len(digits) >= MIN_PHONE_DIGITS:
                found[phone] = found[digits] = f"phone from {path.name}"
    for value in _secrets:
        found[value] = "secret made during the run"
    return found


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _records.append(self.format(record))
        except Exception:  # a record that cannot be formatted is the test's business, not ours
            _records.append(f"{record.name} (unformattable) {record.msg!r} {record.args!r}")


_recorder = _Recorder()


def pytest_configure(config: pytest.Config) -> None:
    root = logging.getLogger()
    root.addHandler(_recorder)
    root.setLevel(logging.DEBUG)


@pytest.fixture(autouse=True, scope="session")
def _log_audit_temp_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    _log_dirs.append(tmp_path_factory.getbasetemp())


def _sources_of_logs() -> list[tuple[str, str]]:
    texts = [("log records of the test process", "\n".join(_records))]
    texts += [("captured process output", text) for text in _outputs]
    for directory in _log_dirs:
        for path in sorted(directory.rglob("*.log")):
            if path.is_file():
                texts.append((str(path.relative_to(directory)), path.read_text(errors="replace")))
    return texts


def _masked(value: str) -> str:
    return value[:3] + "…" + value[-2:] if len(value) > 8 else value[:2] + "…"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    logging.getLogger().removeHandler(_recorder)
    known = needles()
    findings = [
        f"{what} {_masked(needle)!r} in {where}"
        for where, text in _sources_of_logs()
        for needle, what in known.items()
        if needle in text
    ]
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if findings:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if reporter is not None:
            reporter.write_line("")
            reporter.section("log audit: secrets or raw PII in logs", sep="=", red=True)
            for line in sorted(set(findings)):
                reporter.write_line(line)
    elif reporter is not None and session.config.option.verbose >= 0:
        reporter.write_line(f"log audit: {len(known)} secrets and PII strings, none in the logs")
