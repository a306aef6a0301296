"""The one secret policy (core/util/secrets.py): what is a secret, how it is hidden, and that
every place that writes or shows something uses it. The end-to-end proof is
test_secret_canary.py; these pin the rules down one by one."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # the inspector test makes a widget

import json
import logging
import sqlite3
import zipfile

import openpyxl
import pytest
from batchgrid.core.providers.cache import ResponseCache
from batchgrid.core.providers.profiles import api_key, resolve_profile
from batchgrid.core.run import events as ev
from batchgrid.core.run.journal import Journal
from batchgrid.core.table import export_results
from batchgrid.core.util import secrets
from batchgrid.core.util import template as tpl
from batchgrid.core.util.http import http
from batchgrid.core.util.httputil import status_error
from table_fixtures import make_result_set

M = secrets.MASK


# ---- patterns: secrets whatever their origin --------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    # header lines, as a server echoes them or an exception quotes them
    ("Authorization: Bearer abcdefghij0123", "Authorization: Bearer •••"),
    ("authorization=Bearer abcdefghij0123; x-api-key=k-98765", "authorization=Bearer •••; x-api-key=•••"),
    ("Authorization: Token abc123xyz\nX-Trace: visible-1", "Authorization: Token •••\nX-Trace: visible-1"),
    ("X-Auth-Token: tok-5555", "X-Auth-Token: •••"),
    ("Cookie: sessionid=abc123", "Cookie: •••"),
    # URLs: the query parameter's value only, the rest of the URL stays readable
    ("GET https://host/path?api_key=abc123&q=1", "GET https://host/path?api_key=•••&q=1"),
    ("HTTP 404 Not Found from GET http://h:80/x?key=AIzaSyA: {", "HTTP 404 Not Found from GET http://h:80/x?key=•••: {"),
    ("https://user:pa55word@host/x", "https://user:•••@host/x"),
    ("https://h/?X-Amz-Signature=abcdef0123&X-Amz-Date=1", "https://h/?X-Amz-Signature=•••&X-Amz-Date=1"),
    # JSON, escaped JSON inside a string, a snippet cut short, Python's repr
    ('{"authorization": "Bearer abcdefghij", "host": "h:1"}', '{"authorization": "Bearer •••", "host": "h:1"}'),
    ('{\\"x-api-key\\": \\"abcdef123\\"}', '{\\"x-api-key\\": \\"•••\\"}'),
    ('{"headers": {"authorization": "Bearer sk-abcdefg', '{"headers": {"authorization": "Bearer •••'),
    ("{'X-Api-Key': 'k-9876', 'client_secret': 'shh-123'}", "{'X-Api-Key': '•••', 'client_secret': '•••'}"),
    # key formats and bearer tokens anywhere
    ("Incorrect API key provided: sk-abc*****wxyz.", "Incorrect API key provided: •••."),
    ("keys AKIAABCDEFGHIJKLMNOP and ghp_abcdefghijklmnopqrstuvwxyz01", "keys ••• and •••"),
    ("sent Bearer abcdefghijklmnop to the server", "sent Bearer ••• to the server"),
    ("stripe sk_live_abcdefghijklmnop1234 and ASIAABCDEFGHIJKLMNOP", "stripe ••• and •••"),
])
def test_credentials_are_hidden_and_their_context_kept(text, expected):
    assert secrets.redact(text) == expected
    assert secrets.redact(expected) == expected  # redacting twice changes nothing


@pytest.mark.parametrize("text", [
    "tokens_in=5, tokens_out: 7, max_tokens=100",   # token counts are not tokens
    "api_key_env=OPENAI_API_KEY keyring_service=batchgrid",  # where a key is kept, not the key
    "Authorization: Bearer ${API_TOKEN}",            # a reference to a secret, not a secret
    "https://host/items?api_key=${TOKEN}&q=1",
    "the Bearer token was refused; see https://example.com/docs?page=2",
    "task-1234567890 finished; author: Jane",
])
def test_ordinary_text_is_left_alone(text):
    assert secrets.redact(text) == text


def test_credential_names():
    for name in ("Authorization", "Proxy-Authorization", "X-Api-Key", "api_key", "apikey", "client_secret",
                 "access_token", "X-Auth-Token", "csrftoken", "Cookie", "password", "Ocp-Apim-Subscription-Key",
                 "x-auth"):
        assert secrets.is_secret_name(name), name
    for name in ("tokens_in", "max_tokens", "prompt_tokens", "api_key_env", "keyring_service", "author", "monkey",
                 "X-Trace", "Content-Type"):
        assert not secrets.is_secret_name(name), name


def test_nested_values_hide_what_credential_named_keys_hold():
    details = {"provider": "p", "tokens_in": 12, "max_tokens": 99,
               "request": {"url": "https://h/?api_key=abc123", "headers": {
                   "Authorization": "Bearer abcdefghijklmnop", "X-Api-Key": "k-9876", "X-Trace": "visible-1",
                   "X-Ref": "Bearer ${TOKEN}"}},
               "api_key": "plain-value-1", "secret": 12345}
    assert secrets.redact_value(details) == {
        "provider": "p", "tokens_in": 12, "max_tokens": 99,
        "request": {"url": "https://h/?api_key=•••", "headers": {
            "Authorization": "Bearer •••", "X-Api-Key": M, "X-Trace": "visible-1", "X-Ref": "Bearer ${TOKEN}"}},
        "api_key": M, "secret": M}


# ---- known values: whatever was read as a secret --------------------------------------------
def test_a_remembered_value_is_hidden_in_any_text_and_in_its_encoded_forms():
    secrets.remember("plain value/with+signs")
    assert secrets.redact("a plain value/with+signs b") == f"a {M} b"
    assert secrets.redact("?q=plain%20value%2Fwith%2Bsigns&x=1") == f"?q={M}&x=1"  # percent-encoded
    assert secrets.redact("?q=plain+value%2Fwith%2Bsigns") == f"?q={M}"            # form-encoded
    secrets.remember('say "hi" 4471')
    assert secrets.redact_known('{"v": "say \\"hi\\" 4471"}') == f'{{"v": "{M}"}}'  # JSON-escaped
    secrets.remember("abc")  # too short to hide everywhere: it would garble every text
    assert secrets.redact("abc abc") == "abc abc"


def test_a_value_read_through_a_template_is_remembered(monkeypatch):
    monkeypatch.setenv("BG_TEST_SECRET_1", "from-the-environment-7731")
    assert tpl.env_value("BG_TEST_SECRET_1") == "from-the-environment-7731"
    assert secrets.redact("x from-the-environment-7731 y") == f"x {M} y"


def test_a_provider_key_is_remembered_when_it_is_read(monkeypatch):
    monkeypatch.setenv("BG_TEST_PROVIDER_KEY", "provider-key-5519")
    profile = resolve_profile("p", {"p": {"preset": "openai", "base_url": "http://127.0.0.1:9/v1",
                                          "api_key_env": "BG_TEST_PROVIDER_KEY"}})
    assert api_key(profile) == "provider-key-5519"
    assert secrets.redact("key provider-key-5519 refused") == f"key {M} refused"


def test_result_cells_hide_only_remembered_values():
    secrets.remember("cell-secret-4471")
    cells = {"reply": '{"headers": {"x-api-key": "cell-secret-4471"}}', "note": "token: ordinary text",
             "vector": [0.1, 0.2], "n": 3}
    assert secrets.redact_cells(cells) == {"reply": '{"headers": {"x-api-key": "•••"}}',
                                           "note": "token: ordinary text", "vector": [0.1, 0.2], "n": 3}
    clean = {"a": "nothing to hide", "b": [0.5]}
    assert secrets.redact_cells(clean) is clean  # nothing copied when nothing is hidden


# ---- where results are made: nothing downstream ever holds a secret ------------------------
def test_results_traces_and_messages_are_redacted_when_they_are_made():
    secrets.remember("made-secret-9182")
    result = ev.RowResult(0, ev.ERROR, {"echo": "got made-secret-9182"},
                          error="HTTP 404 Not Found from GET https://h/x?api_key=made-secret-9182",
                          trace=[ev.StepTrace("1. HTTP", 0.1, error="authorization=Bearer abcdefghijkl",
                                              details={"request": "GET https://h/x?token=made-secret-9182",
                                                       "headers": {"X-Api-Key": "zzz-123"}})])
    assert result.error == f"HTTP 404 Not Found from GET https://h/x?api_key={M}"
    assert result.outputs == {"echo": f"got {M}"}
    assert result.trace[0].error == f"authorization=Bearer {M}"
    assert result.trace[0].details == {"request": f"GET https://h/x?token={M}", "headers": {"X-Api-Key": M}}
    retry = ev.RowRetrying(0, "1. HTTP", 2, 4, 1.0, "HTTP 503 from GET https://h/?api_key=made-secret-9182")
    assert "made-secret" not in retry.describe()
    assert "made-secret" not in ev.RunFinished("failed", None, "cannot reach made-secret-9182").message
    assert ev.RowPartial(0, "answer", "so far: made-secret-9182").text == f"so far: {M}"


def test_http_error_messages_hide_echoed_credentials():
    """A 404 carries the URL into the error; a 400 echoes the request's headers in its body."""
    request = http.Request("GET", "https://api.example.com/items?api_key=qwerty-12345")
    not_found = status_error(http.Response(404, text="no such item", request=request),
                             "GET https://api.example.com/items?api_key=qwerty-12345")
    echoed = status_error(http.Response(400, text="bad request: authorization=Bearer abcdef123456, "
                                        "x-api-key=zyxwv-98765", request=request), "GET https://api.example.com/items")
    row = ev.RowResult(0, ev.ERROR, {}, error=str(not_found))
    assert row.error.endswith(f"GET https://api.example.com/items?api_key={M}: no such item")
    row = ev.RowResult(0, ev.ERROR, {}, error=str(echoed))
    assert row.error.endswith(f"bad request: authorization=Bearer {M}, x-api-key={M}")


# ---- what is written ------------------------------------------------------------------------
def test_the_journal_file_holds_no_secret(tmp_path):
    secrets.remember("journal-secret-3321")
    journal = Journal(tmp_path / "journal.sqlite")
    run = journal.new_run("job", "hash", None, None, 1)
    result = ev.RowResult(0, ev.ERROR, {"reply": "journal-secret-3321"}, error="x-api-key=journal-secret-3321",
                          trace=[ev.StepTrace("1. HTTP", 0.1, details={"request": "GET /?api_key=journal-secret-3321"})])
    journal.write_rows(run, [("h", result)])
    (_, back), = journal.load_rows(run).values()
    journal.close()
    assert back.error == f"x-api-key={M}" and back.outputs == {"reply": M}
    assert b"journal-secret" not in b"".join(p.read_bytes() for p in tmp_path.iterdir())


def test_the_response_cache_holds_no_secret(tmp_path):
    secrets.remember("cache-secret-5561")
    cache = ResponseCache(tmp_path / "cache.sqlite")
    cache.put("k", {"text": "the key is cache-secret-5561"})
    cache.close()
    assert b"cache-secret" not in b"".join(p.read_bytes() for p in tmp_path.iterdir())
    rows = sqlite3.connect(tmp_path / "cache.sqlite").execute("SELECT value FROM responses").fetchall()
    assert json.loads(rows[0][0]) == {"text": f"the key is {M}"}


def test_exports_hold_no_secret(tmp_path):
    secrets.remember("export-secret-8812")
    rs = make_result_set(
        [{"id": 1, "note": "input export-secret-8812"}, {"id": 2, "note": "fine"}],
        [{"reply": "echo export-secret-8812"}, None],
        failures={1: ("1. HTTP", "StepError", "HTTP 400: authorization=Bearer abcdefgh1234")},
        run_info={"pipeline": {"steps": [{"type": "http", "url": "https://h/?api_key=${TOK}",
                                          "headers": {"Authorization": "Token literal-123", "X-Ref": "${TOK}"}}],
                               "providers": {"p": {"api_key": "literal-key-1", "api_key_env": "MY_KEY"}}}})
    for name in ("r.xlsx", "r.csv", "r.parquet"):
        export_results(rs, tmp_path / name)
    for path in tmp_path.iterdir():
        data = path.read_bytes()
        if zipfile.is_zipfile(path):
            data = b"".join(zipfile.ZipFile(path).read(n) for n in zipfile.ZipFile(path).namelist())
        for secret in (b"export-secret", b"abcdefgh1234", b"literal-123", b"literal-key-1"):
            assert secret not in data, (path.name, secret)
    book = openpyxl.load_workbook(tmp_path / "r.xlsx")
    errors = [[c.value for c in row] for row in book["Errors"].iter_rows()]
    assert errors[1][-1] == f"HTTP 400: authorization=Bearer {M}"
    run = {row[0].value: row[1].value for row in book["Run"].iter_rows(min_row=2)}
    # the pipeline one step per row (write_xlsx): a reference stays readable, secrets are hidden
    assert run["step 1"] == f"http\nurl: https://h/?api_key=${{TOK}}\nheaders: Authorization = Token {M}, X-Ref = ${{TOK}}"
    assert run["provider p"] == f"api_key: {M}\napi_key_env: MY_KEY"


# ---- what is shown --------------------------------------------------------------------------
def test_logs_hide_secrets_in_messages_and_tracebacks(caplog):
    secrets.remember("logged-secret-6620")
    log = logging.getLogger("batchgrid.test_secrets")
    with caplog.at_level(logging.INFO):
        log.info("sent GET %s", "https://h/?api_key=logged-secret-6620")
        try:
            raise ValueError("authorization=Bearer logged-secret-6620")
        except ValueError:
            log.exception("the step failed")
    assert "logged-secret" not in caplog.text
    assert f"https://h/?api_key={M}" in caplog.text and "ValueError: authorization=Bearer •••" in caplog.text


def test_the_row_inspector_shows_no_secret(qtbot):
    from batchgrid.gui.inspector import RowInspector

    secrets.remember("shown-secret-7781")
    inspector = RowInspector()
    qtbot.addWidget(inspector)
    result = ev.RowResult(0, ev.ERROR, {"reply": "echo shown-secret-7781"}, error="HTTP 404 from ?api_key=zz-9182",
                          failed_step="1. HTTP",
                          trace=[ev.StepTrace("1. HTTP", 0.1, error="HTTP 404 from ?api_key=zz-9182",
                                              details={"request": "GET https://h/?api_key=shown-secret-7781",
                                                       "headers": {"X-Api-Key": "other-literal-1"}})])
    inspector.show_row(0, {"note": "about shown-secret-7781"}, result, ev.ERROR, [])
    text = inspector.toPlainText()
    assert "api_key=•••" in text and "about •••" in text
    for secret in ("shown-secret", "zz-9182", "other-literal-1"):
        assert secret not in text
