"""`rq demo`: a real sync of the bundled sample API into Iceberg, then a query of it."""

from __future__ import annotations

from importlib import resources
from typing import Annotated

import orjson
import typer

from rawquery_workers.cli.query_cmd import _print_table
from rawquery_workers.errors import NotFoundError
from rawquery_workers.spec.credentials import Credentials

DEMO_QUERIES = [
    (
        "Revenue by order status",
        "SELECT status, count(*) AS orders, round(sum(total), 2) AS revenue "
        "FROM {name}.orders GROUP BY status ORDER BY revenue DESC",
    ),
    (
        "Best-selling products (child table orders_line_items)",
        "SELECT li.title, sum(li.quantity) AS units, count(DISTINCT o.id) AS orders "
        "FROM {name}.orders_line_items li JOIN {name}.orders o ON o.id = li.order_id "
        "GROUP BY li.title ORDER BY units DESC",
    ),
    (
        "Customers by country (address lifted)",
        "SELECT country, count(*) AS customers FROM {name}.customers GROUP BY country "
        "ORDER BY customers DESC, country",
    ),
]


def demo_spec(base_url: str) -> dict[str, object]:
    from rawquery_workers.spec.loading import parse_spec, spec_to_json

    spec = orjson.loads(resources.files("rawquery_workers.demo").joinpath("shop.json").read_bytes())
    spec["base_url"] = base_url
    return spec_to_json(parse_spec(spec, source="demo spec"))


def demo(
    name: Annotated[str, typer.Option("--name", help="Connection name to use.")] = "demo_shop",
    orders: Annotated[int, typer.Option("--orders", help="Orders the sample API holds.")] = 250,
) -> None:
    """Serve a sample orders API on 127.0.0.1, connect it, sync it into Iceberg, query it."""
    from rawquery_workers.cli import display
    from rawquery_workers.demo.sample_api import DEMO_TOKEN, SampleApi
    from rawquery_workers.query import run_query
    from rawquery_workers.registry import open_registry
    from rawquery_workers.registry.connections import plan_sync
    from rawquery_workers.runner.sync import run_sync
    from rawquery_workers.settings import get_settings
    from rawquery_workers.sink import open_sink

    settings = get_settings()
    registry = open_registry(settings)
    with SampleApi(orders=orders) as api:
        spec = demo_spec(api.url)
        try:
            registry.get_connection(name)
            registry.update_connection(name, spec_json=spec)
        except NotFoundError:
            registry.create_connection(name, spec, Credentials(token=DEMO_TOKEN), None)
        typer.echo(f"sample API on {api.url}; connection '{name}' in {settings.home_dir}")
        sync_id, streams = plan_sync(registry, name)
        with display.Progress(streams) as progress:
            outcome = run_sync(
                sync_id, registry=registry, settings=settings, on_progress=progress.update
            )
    display.sync_summary(outcome)
    if not outcome.ok:
        raise typer.Exit(1)
    sink = open_sink(settings)
    for title, sql in DEMO_QUERIES:
        query = sql.format(name=name)
        typer.echo(f'\n{title}:\n  rq query "{query}"')
        _print_table(run_query(query, sink))


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
