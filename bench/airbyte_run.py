"""Airbyte's low-code (declarative) source on the bench API, reading only: prints JSON figures.

    bench/.venv-airbyte/bin/python bench/airbyte_run.py --url http://127.0.0.1:PORT --token T

Runs from its own environment (`python3 -m venv bench/.venv-airbyte &&
bench/.venv-airbyte/bin/pip install "airbyte-cdk==7.*"`), never the project's. The manifest
is what a user of Airbyte's Connector Builder writes for this API: bearer auth, records at
`data`, offset pagination of 100. Airbyte has no destination here (the issue's figure is
for reading alone), so the time is the source's: fetching, parsing and emitting each record
as an AirbyteMessage, counted here.
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


def manifest(version: str) -> dict[str, Any]:
    return {
        "version": version,
        "type": "DeclarativeSource",
        "check": {"type": "CheckStream", "stream_names": ["orders"]},
        "streams": [
            {
                "type": "DeclarativeStream",
                "name": "orders",
                "primary_key": ["id"],
                "schema_loader": {
                    "type": "InlineSchemaLoader",
                    "schema": {"type": "object", "additionalProperties": True, "properties": {}},
                },
                "retriever": {
                    "type": "SimpleRetriever",
                    "requester": {
                        "type": "HttpRequester",
                        "url_base": "{{ config['url'] }}",
                        "path": "/offset",
                        "http_method": "GET",
                        "authenticator": {
                            "type": "BearerAuthenticator",
                            "api_token": "{{ config['token'] }}",
                        },
                    },
                    "record_selector": {
                        "type": "RecordSelector",
                        "extractor": {"type": "DpathExtractor", "field_path": ["data"]},
                    },
                    "paginator": {
                        "type": "DefaultPaginator",
                        "page_token_option": {
                            "type": "RequestOption",
                            "inject_into": "request_parameter",
                            "field_name": "offset",
                        },
                        "page_size_option": {
                            "type": "RequestOption",
                            "inject_into": "request_parameter",
                            "field_name": "limit",
                        },
                        "pagination_strategy": {"type": "OffsetIncrement", "page_size": 100},
                    },
                },
            }
        ],
    }


def catalog() -> ConfiguredAirbyteCatalog:
    stream = AirbyteStream(
        name="orders", json_schema={"type": "object"}, supported_sync_modes=[SyncMode.full_refresh]
    )
    return ConfiguredAirbyteCatalog(
        streams=[
            ConfiguredAirbyteStream(
                stream=stream,
                sync_mode=SyncMode.full_refresh,
                destination_sync_mode=DestinationSyncMode.overwrite,
            )
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    args = parser.parse_args()
    version = metadata.version("airbyte-cdk")
    config = {"url": args.url, "token": args.token}
    logger = logging.getLogger("airbyte")
    logger.setLevel(logging.WARNING)
    started = time.perf_counter()
    source = ConcurrentDeclarativeSource(
        catalog=catalog(), config=config, state=None, source_config=manifest(version)
    )
    records = 0
    for message in source.read(logger, config, catalog(), None):
        if message.type == Type.RECORD:
            records += 1
    seconds = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"airbyte_cdk": version, "records": records, "seconds": seconds,
                      "rss_mb": rss}))  # fmt: skip


if __name__ == "__main__":
    main()
