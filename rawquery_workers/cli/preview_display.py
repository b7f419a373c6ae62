"""How `rq spec preview` shows a Preview: plain, indented text (or one JSON document)."""

from __future__ import annotations

from typing import Any

import orjson

from rawquery_workers.authoring.preview import Preview, StreamPreview, TableView
from rawquery_workers.http.client import Event

_LINE_CHARS = 300


def preview_json(preview: Preview) -> str:
    return orjson.dumps(preview.as_dict(), default=str, option=orjson.OPT_INDENT_2).decode()


def preview_lines(preview: Preview) -> list[str]:
    plural = "s" if preview.max_pages != 1 else ""
    lines = [
        f"preview of {preview.source or 'the spec'} ({preview.base_url}, up to "
        f"{preview.max_pages} page{plural} per stream); nothing is written"
    ]
    for stream in preview.streams:
        lines += ["", f"stream {stream.name}"]
        lines += _stream_lines(stream)
    return lines


def _stream_lines(stream: StreamPreview) -> list[str]:
    lines = ["  requests"] + [f"    {_request(e)}" for e in stream.requests]
    if len(lines) == 1:
        lines.append("    (none sent)")
    if stream.pages:
        lines.append("  pages")
        for page in stream.pages:
            nxt = f"next: {page.next}" if page.next else "no next page"
            if page.next and page.next_from:
                nxt += f" (from {page.next_from})"
            total = f", the API reports {page.total} in all" if page.total is not None else ""
            lines.append(f"    page {page.number}: {_count(page.records, 'record')}{total}, {nxt}")
            if page.parent is not None:
                lines.append(f"      for parent {_json(page.parent)}")
            if page.body is not None:
                lines.append(f"      body sent: {_json(page.body)}")
        if stream.more_pages:
            lines.append("    (preview stopped at the page limit; more pages exist)")
    if stream.sample:
        lines.append(f"  records as extracted ({len(stream.sample)} of {stream.records})")
        lines += [f"    {_json(r)}" for r in stream.sample]
    for table in stream.tables:
        lines += _table_lines(table)
    if stream.warnings:
        lines.append("  warnings a sync would raise")
        lines += [f"    - {w}" for w in stream.warnings]
    for hint in stream.hints:
        lines.append(f"  hint: {hint.message}; add to the stream:")
        lines += [f"    {line}" for line in hint.fragment_json().splitlines()]
    if stream.error:
        lines.append(f"  error: {stream.error}")
    return lines


def _request(event: Event) -> str:
    method, url = event.get("method"), event.get("url")
    if event.get("event") == "retry":
        status = event.get("status")
        why = f"HTTP {status}" if status else event.get("reason")
        return (
            f"retry after attempt {event.get('attempt')} of {method} {url} ({why}): "
            f"waiting {_seconds(event.get('wait'))}"
        )
    status = event.get("status")
    outcome = str(status) if status is not None else f"failed: {event.get('reason')}"
    extra = [_seconds(event.get("seconds"))]
    waited = event.get("rate_limit_wait")
    if isinstance(waited, int | float) and waited > 0:
        extra.append(f"waited {_seconds(waited)} for the rate limit")
    if (attempt := event.get("attempt")) and attempt != 1:
        extra.append(f"attempt {attempt}")
    return f"{method} {url} -> {outcome} ({', '.join(extra)})"


def _table_lines(table: TableView) -> list[str]:
    about = [_count(table.rows, "row")]
    if table.keys:
        about.append(f"primary key {', '.join(table.keys)}")
    if table.parent:
        about.append(f"child of {table.parent} by {table.parent_key}")
    lines = [f"  table {table.name} ({'; '.join(about)})", "    iceberg schema"]
    width = max((len(c.name) for c in table.columns), default=4)
    for column in table.columns:
        note = f"  {column.note}" if column.note else ""
        lines.append(f"      {column.name:<{width}}  {column.type:<11}{note}".rstrip())
    if table.sample:
        lines.append(f"    rows after transformation ({len(table.sample)} of {table.rows})")
        lines += [f"      {_json(row)}" for row in table.sample]
    return lines


def _json(value: Any) -> str:
    text = orjson.dumps(value, default=str).decode()
    return text if len(text) <= _LINE_CHARS else text[:_LINE_CHARS] + "…"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _seconds(value: object) -> str:
    return f"{value:.2f}s" if isinstance(value, int | float) else "?"
