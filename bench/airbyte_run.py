"""Airbyte's low-code (declarative) source on the bench API, reading only: prints JSON figures.

    bench/.venv-airbyte/bin/python bench/airbyte_run.py --url http://127.0.0.1:PORT [--token T]
        [--style offset|pages|cursor|children] [--page-size 100]

Runs from its own environment (`python3 -m venv bench/.venv-airbyte &&
bench/.venv-airbyte/bin/pip install "airbyte-cdk==7.*"`), never the project's. The manifest
is what a user of Airbyte's Connector Builder writes for this API: bearer auth (none without
`--token`), records at `data`, pages of 100, and per `--style`:
    offset    /offset, OffsetIncrement (offset/limit; the default)
    pages     /pages, PageIncrement (start_from_page 1, page/per_page; stops on a short page)
    cursor    /cursor, CursorPagination (cursor_value "{{ response.next_cursor }}",
              stop_condition "{{ not response.next_cursor }}", cursor/limit)
    children  a `parents` stream (/parents, NoPagination) and an `orders` stream at
              /parents/ID/orders, partitioned by a SubstreamPartitionRouter with a
              ParentStreamConfig on the parents' `id` (NoPagination)
Both streams of children are in the catalog (a connection syncs every stream by default);
"records" counts only the `orders` records. Airbyte has no destination here (the issue's
figure is for reading alone), so the time is the source's: fetching, parsing and emitting
each record as an AirbyteMessage, counted here.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import time
from importlib import metadata
from typing import Any

from airbyte_cdk.models import (
    AirbyteStream,
    ConfiguredAirbyteCatalog,
    ConfiguredAirbyteStream,
    DestinationSyncMode,
    SyncMode,
    Type,
)
from airbyte_cdk.sources.declarative.concurrent_declarative_source import (
    ConcurrentDeclarativeSource,
)

STYLES = ("offset", "pages", "cursor", "children")


def option(field: str) -> dict[str, Any]:
    return {"type": "RequestOption", "inject_into": "request_parameter", "field_name": field}


def paginator(style: str, page_size: int) -> dict[str, Any]:
    """The DefaultPaginator of one style (NoPagination for the one-page parents/children)."""
    if style == "offset":
        token, size = "offset", "limit"
        strategy = {"type": "OffsetIncrement", "page_size": page_size}
    elif style == "pages":
        token, size = "page", "per_page"
        strategy = {"type": "PageIncrement", "page_size": page_size, "start_from_page": 1}
    elif style == "cursor":
        token, size = "cursor", "limit"
        strategy = {"type": "CursorPagination", "page_size": page_size,
                    "cursor_value": "{{ response.next_cursor }}",
                    "stop_condition": "{{ not response.next_cursor }}"}  # fmt: skip
    else:
        return {"type": "NoPagination"}
    return {"type": "DefaultPaginator", "page_token_option": option(token),
            "page_size_option": option(size), "pagination_strategy": strategy}  # fmt: skip


def stream(name: str, path: str, paging: dict[str, Any], token: bool) -> dict[str, Any]:
    requester: dict[str, Any] = {"type": "HttpRequester", "url_base": "{{ config['url'] }}",
                                 "path": path, "http_method": "GET"}  # fmt: skip
    if token:
        requester["authenticator"] = {"type": "BearerAuthenticator",
                                      "api_token": "{{ config['token'] }}"}  # fmt: skip
    return {
        "type": "DeclarativeStream",
        "name": name,
        "primary_key": ["id"],
        "schema_loader": {
            "type": "InlineSchemaLoader",
            "schema": {"type": "object", "additionalProperties": True, "properties": {}},
        },
        "retriever": {
            "type": "SimpleRetriever",
            "requester": requester,
            "record_selector": {
                "type": "RecordSelector",
                "extractor": {"type": "DpathExtractor", "field_path": ["data"]},
            },
            "paginator": paging,
        },
    }


def streams(style: str, page_size: int, token: bool) -> list[dict[str, Any]]:
    """The manifest's streams; the records are those of `orders`."""
    if style != "children":
        return [stream("orders", f"/{style}", paginator(style, page_size), token)]
    parents = stream("parents", "/parents", paginator(style, page_size), token)
    orders = stream("orders", "/parents/{{ stream_partition.parent_id }}/orders",
                    paginator(style, page_size), token)  # fmt: skip
    orders["retriever"]["partition_router"] = {
        "type": "SubstreamPartitionRouter",
        "parent_stream_configs": [
            {
                "type": "ParentStreamConfig",
                "stream": stream("parents", "/parents", paginator(style, page_size), token),
                "parent_key": "id",
                "partition_field": "parent_id",
            }
        ],
    }
    return [parents, orders]


def manifest(version: str, style: str, page_size: int, token: bool) -> dict[str, Any]:
    return {
        "version": version,
        "type": "DeclarativeSource",
        "check": {"type": "CheckStream", "stream_names": ["orders"]},
        "streams": streams(style, page_size, token),
    }


def catalog(names: list[str]) -> ConfiguredAirbyteCatalog:
    return ConfiguredAirbyteCatalog(
        streams=[
            ConfiguredAirbyteStream(
                stream=AirbyteStream(
                    name=name,
                    json_schema={"type": "object"},
                    supported_sync_modes=[SyncMode.full_refresh],
                ),
                sync_mode=SyncMode.full_refresh,
                destination_sync_mode=DestinationSyncMode.overwrite,
            )
            for name in names
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", default=None, help="bearer token (no auth without it)")
    parser.add_argument("--style", choices=STYLES, default="offset")
    parser.add_argument("--page-size", type=int, default=100)
    args = parser.parse_args()
    version = metadata.version("airbyte-cdk")
    config = {"url": args.url}
    if args.token:
        config["token"] = args.token
    source_config = manifest(version, args.style, args.page_size, bool(args.token))
    names = ["parents", "orders"] if args.style == "children" else ["orders"]
    logger = logging.getLogger("airbyte")
    logger.setLevel(logging.WARNING)
    started = time.perf_counter()
    source = ConcurrentDeclarativeSource(
        catalog=catalog(names), config=config, state=None, source_config=source_config
    )
    records = 0
    for message in source.read(logger, config, catalog(names), None):
        if message.type == Type.RECORD and message.record.stream == "orders":
            records += 1
    seconds = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"airbyte_cdk": version, "style": args.style, "records": records,
                      "seconds": seconds, "rss_mb": rss}))  # fmt: skip


if __name__ == "__main__":
    main()
