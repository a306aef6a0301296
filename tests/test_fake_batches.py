"""The test server's Batch API (tests/fake_openai.py, "Batches"): files, batches, their stages and faults,
through the openai SDK as a real client would use them."""

from __future__ import annotations

import json

import httpx2 as http
import openai
import pytest
from fake_openai import embed_text

MODEL = "gpt-4o-mini"


@pytest.fixture
def client(fake_openai):
    with openai.OpenAI(base_url=fake_openai.base_url, api_key="k", max_retries=0) as c:
        yield c


def line(custom_id, prompt, model=MODEL, url="/v1/chat/completions"):
    return {"custom_id": custom_id, "method": "POST", "url": url,
            "body": {"model": model, "messages": [{"role": "user", "content": prompt}]}}


def upload(client, lines):
    data = b"".join((json.dumps(x) if isinstance(x, dict) else x).encode() + b"\n" for x in lines)
    return client.files.create(file=("input.jsonl", data), purpose="batch")


def submit(client, lines, endpoint="/v1/chat/completions"):
    return client.batches.create(input_file_id=upload(client, lines).id, endpoint=endpoint, completion_window="24h")


def read(client, file_id):
    return {x["custom_id"]: x for x in map(json.loads, client.files.content(file_id).text.splitlines())}


def test_a_batch_moves_through_its_stages_and_answers_as_the_endpoint_does(fake_openai, client):
    batch = submit(client, [line(f"{i}:0", f"row {i}") for i in range(4)])
    assert batch.status == "validating" and fake_openai.stats.batches_created == 1
    seen = []
    for _ in range(3):
        fake_openai.advance_batches()
        batch = client.batches.retrieve(batch.id)
        seen.append((batch.status, batch.request_counts.completed))
    assert seen == [("in_progress", 0), ("finalizing", 4), ("completed", 4)]
    assert batch.request_counts.total == 4 and batch.error_file_id is None
    assert batch.in_progress_at and batch.finalizing_at and batch.completed_at
    out = read(client, batch.output_file_id)
    assert sorted(out) == ["0:0", "1:0", "2:0", "3:0"]
    answer = out["2:0"]
    assert answer["error"] is None and answer["id"].startswith("batch_req_")
    assert answer["response"]["status_code"] == 200 and answer["response"]["request_id"]
    body = answer["response"]["body"]
    assert body["choices"][0]["message"]["content"] == "echo: row 2"
    assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}
    assert fake_openai.stats.batch_lines["2:0"] == 1
    assert client.files.retrieve(batch.output_file_id).purpose == "batch_output"
    assert fake_openai.advance_batches() == 0  # nothing left to move


def test_output_lines_come_in_no_particular_order_unless_asked(fake_openai, client):
    batch = submit(client, [line(f"{i}:0", f"row {i}") for i in range(20)])
    fake_openai.finish_batches()
    ids = [json.loads(x)["custom_id"] for x in fake_openai.file_content(
        client.batches.retrieve(batch.id).output_file_id).splitlines()]
    assert sorted(ids) == sorted(f"{i}:0" for i in range(20)) and ids != [f"{i}:0" for i in range(20)]
    fake_openai.configure(batch_shuffle=False)
    batch = submit(client, [line(f"{i}:0", f"row {i}") for i in range(20)])
    fake_openai.finish_batches()
    ids = [json.loads(x)["custom_id"] for x in fake_openai.file_content(
        client.batches.retrieve(batch.id).output_file_id).splitlines()]
    assert ids == [f"{i}:0" for i in range(20)]


def test_requests_run_a_few_at_a_time_show_progress(fake_openai, client):
    fake_openai.configure(batch_lines_per_stage=3)
    batch = submit(client, [line(f"{i}:0", f"row {i}") for i in range(7)])
    fake_openai.advance_batches()
    done = []
    while client.batches.retrieve(batch.id).status == "in_progress":
        fake_openai.advance_batches()
        done.append(client.batches.retrieve(batch.id).request_counts.completed)
    assert done == [3, 6, 7]
    fake_openai.advance_batches(lines=1)  # finalizing -> completed whatever `lines` says
    assert client.batches.retrieve(batch.id).status == "completed"


def test_failing_lines_go_to_the_error_file(fake_openai, client):
    fake_openai.configure(batch_line_errors={r"^1:": 500, r"^2:": 429, r"^3:": "server_error"}, models=[MODEL])
    lines = [line(f"{i}:0", f"row {i}") for i in range(4)] + [line("4:0", "row 4", model="nope")]
    batch = submit(client, lines[:4])
    fake_openai.finish_batches()
    batch = client.batches.retrieve(batch.id)
    assert (batch.request_counts.completed, batch.request_counts.failed) == (1, 3)
    errors = read(client, batch.error_file_id)
    assert errors["1:0"]["response"]["status_code"] == 500
    assert errors["1:0"]["response"]["body"]["error"]["type"] == "server_error"
    assert errors["2:0"]["response"]["status_code"] == 429
    assert errors["3:0"]["response"] is None and errors["3:0"]["error"]["code"] == "server_error"
    assert list(read(client, batch.output_file_id)) == ["0:0"]
    # a request the endpoint itself refuses (an unknown model) is an error line with the endpoint's answer
    batch = submit(client, [lines[4]])
    fake_openai.finish_batches()
    refused = read(client, client.batches.retrieve(batch.id).error_file_id)["4:0"]["response"]
    assert refused["status_code"] == 404 and refused["body"]["error"]["code"] == "model_not_found"


def test_an_expired_batch_keeps_what_it_did_and_writes_the_rest_as_expired(fake_openai, client):
    fake_openai.configure(batch_expire_after=2)
    batch = submit(client, [line(f"{i}:0", f"row {i}") for i in range(5)])
    fake_openai.finish_batches()
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "expired" and batch.expired_at
    assert len(read(client, batch.output_file_id)) == 2
    expired = read(client, batch.error_file_id)
    assert len(expired) == 3 and all(x["error"]["code"] == "batch_expired" for x in expired.values())
    # "missing": the requests not run are in neither file
    fake_openai.configure(batch_expired_lines="missing", batch_expire_after=None)
    batch = submit(client, [line(f"{i}:0", f"row {i}") for i in range(5)])
    fake_openai.advance_batches()
    assert fake_openai.expire_batches() == 1
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "expired" and batch.output_file_id is None and batch.error_file_id is None


def test_a_bad_line_fails_the_batch_at_validation(fake_openai, client):
    batch = submit(client, [line("0:0", "a"), "{not json", line("0:0", "dup"), line("3:0", "b", model="other"),
                            line("4:0", "c", url="/v1/embeddings"), {"custom_id": "5:0"}])
    fake_openai.advance_batches()
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "failed" and batch.failed_at
    assert [(e.line, e.code) for e in batch.errors.data] == [
        (2, "invalid_json_line"), (3, "duplicate_custom_id"), (4, "mismatched_model"), (5, "mismatched_endpoint"),
        (6, "missing_required_parameter")]
    assert batch.output_file_id is None and fake_openai.stats.batch_lines == {}
    fake_openai.configure(batch_invalid_lines={r"^1:": "the request is too large"})
    batch = submit(client, [line("0:0", "a"), line("1:0", "b")])
    fake_openai.advance_batches()
    error = client.batches.retrieve(batch.id).errors.data[0]
    assert (error.line, error.message) == (2, "the request is too large")
    fake_openai.configure(batch_max_requests=1)
    batch = submit(client, [line("0:0", "a"), line("1:0", "b")])
    fake_openai.advance_batches()
    assert client.batches.retrieve(batch.id).errors.data[0].code == "too_many_requests"


def test_cancel(fake_openai, client):
    fake_openai.configure(batch_lines_per_stage=2)
    batch = submit(client, [line(f"{i}:0", f"row {i}") for i in range(5)])
    fake_openai.advance_batches()
    fake_openai.advance_batches()  # two requests done
    assert client.batches.cancel(batch.id).status == "cancelling"
    fake_openai.advance_batches()
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "cancelled" and batch.cancelled_at
    assert sorted(read(client, batch.output_file_id)) == ["0:0", "1:0"] and batch.error_file_id is None
    with pytest.raises(openai.BadRequestError, match="Cannot cancel a batch with status 'cancelled'"):
        client.batches.cancel(batch.id)


def test_embeddings_batches(fake_openai, client):
    lines = [{"custom_id": f"{i}:0", "method": "POST", "url": "/v1/embeddings",
              "body": {"model": "text-embedding-3-small", "input": f"text {i}", "dimensions": 8}} for i in range(3)]
    batch = submit(client, lines, endpoint="/v1/embeddings")
    fake_openai.finish_batches()
    body = read(client, client.batches.retrieve(batch.id).output_file_id)["1:0"]["response"]["body"]
    assert body["data"][0]["embedding"] == embed_text("text 1", 8)
    assert body["usage"]["prompt_tokens"] == 2


def test_stages_can_move_with_time(fake_openai, client):
    fake_openai.configure(batch_seconds_per_stage=0)  # every stage is over at once
    batch = submit(client, [line("0:0", "a")])
    assert client.batches.retrieve(batch.id).status == "completed"


def test_files_list_retrieve_and_delete(fake_openai, client):
    file = upload(client, [line("0:0", "a")])
    assert fake_openai.stats.files_uploaded == 1
    assert client.files.retrieve(file.id).filename == "input.jsonl"
    assert [f.id for f in client.files.list()] == [file.id]
    assert client.files.delete(file.id).deleted
    with pytest.raises(openai.NotFoundError, match="No such File object"):
        client.files.retrieve(file.id)


def test_creating_a_batch_checks_what_it_is_given(fake_openai, client):
    file = upload(client, [line("0:0", "a")])
    with pytest.raises(openai.BadRequestError, match="completion_window"):
        client.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="1h")
    with pytest.raises(openai.BadRequestError, match="Invalid endpoint"):
        client.batches.create(input_file_id=file.id, endpoint="/v1/completions", completion_window="24h")
    with pytest.raises(openai.NotFoundError, match="No such File object"):
        client.batches.create(input_file_id="file-x", endpoint="/v1/chat/completions", completion_window="24h")
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_x")
    assert fake_openai.stats.batches_created == 0


def test_list_pages_newest_first(fake_openai, client):
    ids = [submit(client, [line("0:0", "a")]).id for _ in range(3)]
    assert [b.id for b in client.batches.list(limit=2)] == ids[::-1]  # the SDK pages on with `after`
    page = http.get(fake_openai.base_url + "/batches", params={"limit": 2}).json()
    assert page["has_more"] and [b["id"] for b in page["data"]] == ids[:0:-1]


def test_azure_paths(fake_openai):
    client = openai.AzureOpenAI(azure_endpoint=fake_openai.url, api_version="2024-10-21", api_key="k",
                                max_retries=0)
    file = client.files.create(file=("in.jsonl", json.dumps(line("0:0", "a", url="/chat/completions")).encode()),
                               purpose="batch")
    batch = client.batches.create(input_file_id=file.id, endpoint="/chat/completions",  # type: ignore[arg-type]
                                  completion_window="24h")
    fake_openai.finish_batches()
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed"
    assert "echo: a" in client.files.content(batch.output_file_id).text
    client.close()
