"""The test server behaves as the real servers the faults issue describes (tests/fake_openai.py):
each behaviour checked here, so a test that relies on it fails for the right reason."""

from __future__ import annotations

import json
import threading

import httpx2 as http
import pytest


def chat(server, prompt="one two three", **body):
    request = {"model": "m", "messages": [{"role": "user", "content": prompt}], **body}
    return http.post(server.base_url + "/chat/completions", json=request, timeout=10)


def stream_text(server, prompt="one two three", **body):
    request = {"model": "m", "messages": [{"role": "user", "content": prompt}], "stream": True, **body}
    events = []
    with http.stream("POST", server.base_url + "/chat/completions", json=request, timeout=10) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(line[6:])
    return response, events


def test_max_tokens_cuts_the_answer_with_finish_reason_length(fake_openai):
    data = chat(fake_openai, "a b c d e f", max_tokens=3).json()
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["choices"][0]["message"]["content"] == "echo: a b"
    assert data["usage"]["completion_tokens"] == 3
    assert chat(fake_openai, "a b").json()["choices"][0]["finish_reason"] == "stop"


def test_max_completion_tokens_can_be_ignored_as_llama_cpp_python_does(fake_openai):
    fake_openai.configure(ignores_max_completion_tokens=True)
    data = chat(fake_openai, "a b c d e f", max_completion_tokens=3).json()
    assert data["choices"][0]["finish_reason"] == "stop"
    assert chat(fake_openai, "a b c d e f", max_tokens=3).json()["choices"][0]["finish_reason"] == "length"


def test_context_size_refuses_long_prompts_and_reports_itself(fake_openai):
    fake_openai.configure(context_size=5)
    response = chat(fake_openai, "a b c d e f g")
    assert response.status_code == 400
    assert response.json()["error"]["n_ctx"] == 5
    assert http.get(fake_openai.url + "/props").json()["default_generation_settings"]["n_ctx"] == 5
    # what is left of the context cuts the answer
    assert chat(fake_openai, "a b c").json()["choices"][0]["finish_reason"] == "length"


def test_context_overflow_as_an_empty_stream(fake_openai):
    fake_openai.configure(context_size=5, context_overflow="empty_stream")
    response, events = stream_text(fake_openai, "a b c d e f g")
    assert response.status_code == 200
    assert len(events) == 2 and json.loads(events[0])["choices"][0]["finish_reason"] is None


def test_empty_and_stalled_streams(fake_openai):
    fake_openai.configure(empty_stream={"empty": 1})
    _, events = stream_text(fake_openai, "empty please")
    assert events == [events[0], "[DONE]"] and json.loads(events[0])["choices"][0]["delta"]["content"] == ""
    _, events = stream_text(fake_openai, "empty please")
    assert events[-1] == "[DONE]"
    assert fake_openai.stats.answered["empty please"] == 1


def test_sliding_window_rate_limit_and_its_wait_headers(fake_openai):
    fake_openai.configure(rate_limit=(2, 60), retry_after_style="epoch")
    assert [chat(fake_openai).status_code for _ in range(3)] == [200, 200, 429]
    response = chat(fake_openai)
    assert int(response.headers["x-ratelimit-reset"]) > 1_700_000_000  # a Unix time, not a duration
    assert fake_openai.stats.rate_limited == 2
    fake_openai.configure(retry_after_style="seconds")
    assert 55 <= float(chat(fake_openai).headers["retry-after"]) <= 60


def test_refused_features(fake_openai):
    fake_openai.configure(refuse_json_schema=True, embeddings="501")
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    response = chat(fake_openai, response_format=schema)
    assert response.status_code == 500 and "json_object" in response.json()["error"]["message"]
    assert chat(fake_openai, response_format={"type": "json_object"}).status_code == 200
    embed = http.post(fake_openai.base_url + "/embeddings", json={"model": "e", "input": "x"})
    assert embed.status_code == 501


def test_dimensions_honoured_or_ignored(fake_openai):
    body = {"model": "e", "input": ["x"], "dimensions": 8}
    assert len(http.post(fake_openai.base_url + "/embeddings", json=body).json()["data"][0]["embedding"]) == 8
    fake_openai.configure(ignore_dimensions=True)
    assert len(http.post(fake_openai.base_url + "/embeddings", json=body).json()["data"][0]["embedding"]) == 64


def test_slots_queue_requests_at_the_server(fake_openai):
    fake_openai.configure(slots=1, latency=0.05)
    threads = [threading.Thread(target=chat, args=(fake_openai, f"p{i}")) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fake_openai.stats.peak_queued >= 1
    assert fake_openai.stats.queued == 0
    assert sum(fake_openai.stats.answered.values()) == 3


def test_a_restart_refuses_connections_then_answers_again(fake_openai):
    assert chat(fake_openai).status_code == 200
    fake_openai.go_down()
    with pytest.raises(http.ConnectError):
        chat(fake_openai)
    fake_openai.come_back()
    assert chat(fake_openai).status_code == 200


def test_hold_keeps_requests_until_released(fake_openai):
    fake_openai.configure(hold=True)
    result = []
    thread = threading.Thread(target=lambda: result.append(chat(fake_openai).status_code))
    thread.start()
    deadline = threading.Event()
    while fake_openai.stats.in_flight < 1:
        deadline.wait(0.005)
    assert result == []
    fake_openai.configure(hold=False)
    thread.join()
    assert result == [200]
