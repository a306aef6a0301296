"""Web steps: HTTP requests whose URL, headers and body come from the row."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from batchgrid.core.util import template as tpl
from batchgrid.core.util.errors import StepError
from batchgrid.core.util.http import http
from batchgrid.core.util.httputil import is_secret_header, send_following_redirects, status_error, transport_error
from batchgrid.core.util.jsonpath import compile_path, extract

from .base import (
    BOOL,
    CHOICE,
    FLOAT,
    MAPPING,
    MULTILINE,
    OUTPUT,
    STRINGS,
    TEMPLATE,
    Param,
    Step,
    register,
    safe_placeholders,
)

if TYPE_CHECKING:  # pragma: no cover
    from .context import StepContext


@register
class HttpRequest(Step):
    type = "http"
    title = "HTTP request"
    group = "Web"
    description = "Call a web API for each row; pick values out of its JSON reply."
    external = True
    params = (
        Param("method", CHOICE, "GET", "HTTP method.", choices=("GET", "POST", "PUT", "PATCH", "DELETE")),
        Param("url", TEMPLATE, "", "URL template, e.g. https://api.example.com/items/{id}. Each {column} is "
              "percent-encoded, so its value stays one path segment or one query value; a {column} at the very "
              "start is the address itself and goes in as it is.", required=True, label="URL"),
        Param("raw_in_url", STRINGS, [], "Columns put into the URL as they are, not encoded: their values may add "
              "path segments or query parameters. Only for columns you trust.", label="Raw in URL"),
        Param("headers", MAPPING, {}, "Header name to value template; write ${ENV_VAR} for secrets.",
              allow_env=True),
        Param("body", MULTILINE, "", "Body template (POST/PUT/PATCH), e.g. {\"q\": \"{query}\"}."),
        Param("body_format", CHOICE, "json", "json: the body must be valid JSON after filling in (values are "
              "JSON-escaped); form: one name=value pair a line (values are form-encoded); text: sent as is.",
              choices=("json", "form", "text")),
        Param("extract", MAPPING, {}, "New column to JSON path in the reply, e.g. price: $.data.price."),
        Param("output", OUTPUT, "", "Column for the whole reply body (leave blank when extracting).",
              label="Write reply to"),
        Param("timeout", FLOAT, 30.0, "Seconds to wait for a reply before retrying.", minimum=0.1, maximum=600),
        Param("fail_on_error_status", BOOL, True, "A 4xx reply fails the row (5xx and 429 are retried)."),
    )

    def writes(self) -> list[str]:
        names = list(self.config["extract"])
        if self.config["output"] or not names:
            names.insert(0, self.output_name())
        return names

    def default_output(self, param_name: str) -> str:
        return "response"

    def check(self) -> list[tuple[str, str]]:
        problems = []
        for column, path in self.config["extract"].items():
            try:
                compile_path(path)
            except ValueError as exc:
                problems.append((f"extract.{column}", str(exc)))
        in_url = set(safe_placeholders(self.config["url"]))
        problems += [("raw_in_url", f'"{name}" is not a {{column}} of the URL') for name in self.config["raw_in_url"]
                     if name not in in_url]
        for name, value in self.config["headers"].items():
            try:
                tpl.parse(value)
            except tpl.TemplateSyntaxError as exc:
                problems.append((f"headers.{name}", str(exc)))
        return problems

    def column_refs(self) -> list[tuple[str, str]]:
        refs = super().column_refs()
        refs += [("body", name) for name in safe_placeholders(self.config["body"], lenient=True)]
        for header, value in self.config["headers"].items():
            refs += [(f"headers.{header}", name) for name in safe_placeholders(value)]
        return refs

    def _request(self, row: Mapping[str, Any]) -> dict[str, Any]:
        url = self._url(row)
        headers = {k: tpl.render(v, row, allow_env=True) for k, v in self.config["headers"].items()}
        for name, value in headers.items():
            if "\n" in value or "\r" in value:  # never sent (the client refuses), and not worth a retry
                raise StepError(f"the header {name} would hold a line break after filling in; "
                                "a header value is one line")
        request: dict[str, Any] = {"method": self.config["method"], "url": url, "headers": headers,
                                   "timeout": self.config["timeout"]}
        body = self.config["body"]
        if body and self.config["method"] != "GET":
            fmt = self.config["body_format"]
            if fmt == "json":
                text = tpl.render(body, row, lenient=True, escape=_json_string_content)
                try:
                    request["json"] = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise StepError(f"the request body is not valid JSON after filling in ({exc.msg}): {text[:120]}") from None
            elif fmt == "form":
                request["data"] = _form_fields(body, row)
            else:
                request["content"] = tpl.render(body, row, lenient=True).encode()
        return request

    async def run(self, row: Mapping[str, Any], ctx: StepContext) -> dict[str, Any]:
        request = self._request(row)
        client = ctx.resources.http_client(ctx.max_concurrency)
        what = f"{request['method']} {request['url']}"

        async def send() -> http.Response:
            try:
                response = await send_following_redirects(client, request, self._secret_headers())
            except http.InvalidURL as exc:
                raise StepError(f"not a usable URL: {request['url']!r} ({exc})") from None
            except http.HTTPError as exc:
                raise transport_error(exc, request["url"]) from None
            if response.status_code >= 400:
                error = status_error(response, what)
                if isinstance(error, StepError) and not self.config["fail_on_error_status"]:
                    return response
                raise error
            return response

        response = await ctx.call(send)
        ctx.note(request=what, status=response.status_code)
        return self._outputs(response)

    def _url(self, row: Mapping[str, Any]) -> str:
        """The URL with each column's value percent-encoded where it lands; a column that starts the
        URL (the address) and the `raw_in_url` columns go in as they are."""
        template = self.config["url"]
        parts = tpl.parse(template)
        raw = set(self.config["raw_in_url"])
        if parts and parts[0][1] == tpl.COLUMN:
            raw.add(parts[0][0])
        values = {name: tpl.as_text(row[name]) if name in raw else _url_value(tpl.as_text(row[name]))
                  for name, kind in parts if kind == tpl.COLUMN and name in row}
        return tpl.render(template, values)

    def _secret_headers(self) -> list[str]:
        """Headers dropped when a redirect leaves the origin: those named like a credential and
        those whose value reads an environment variable."""
        return [name for name, value in self.config["headers"].items()
                if is_secret_header(name) or any(kind == tpl.ENV for _, kind in tpl.parse(value))]

    def _outputs(self, response: http.Response) -> dict[str, Any]:
        out: dict[str, Any] = {}
        extract_map = self.config["extract"]
        if self.config["output"] or not extract_map:
            out[self.output_name()] = response.text
        if extract_map:
            try:
                data = response.json()
            except ValueError:
                raise StepError(f"the reply is not JSON, so nothing can be extracted: {response.text[:120]}",
                                raw=response.text) from None
            for column, path in extract_map.items():
                out[column] = extract(data, path)
        return out


def _url_value(value: str) -> str:
    """A value percent-encoded to stay one path segment or one query value: "/", "?", "&", "#"
    and "=" encoded too, and "." and ".." (which a URL reads as "here" and "up one") as well."""
    if value in (".", ".."):
        return value.replace(".", "%2E")
    return quote(value, safe="")


def _form_fields(body: str, row: Mapping[str, Any]) -> dict[str, str]:
    """A form body: one `name=value` template a line, each filled in on its own, so a value
    holding a line break or an "=" stays that field's value (the client form-encodes it)."""
    fields = {}
    for line in body.splitlines():
        if "=" in line:
            name, value = line.split("=", 1)
            fields[tpl.render(name.strip(), row, lenient=True)] = tpl.render(value.strip(), row, lenient=True)
    return fields


def _json_string_content(value: str) -> str:
    """A value made safe inside a JSON string literal: quotes and line breaks escaped."""
    return json.dumps(value, ensure_ascii=False)[1:-1]
