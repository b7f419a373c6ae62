"""Spec hints as pure functions: response shapes of real APIs in, spec fragments out."""

from __future__ import annotations

from typing import Any

from rawquery_workers.authoring.hints import (
    data_path_hint,
    looks_like_time,
    next_link,
    obvious_array_path,
    pagination_hints,
    type_hints,
    walk_objects,
)
from rawquery_workers.spec.jsonpath import MISSING, get_path
from rawquery_workers.spec.loading import parse_spec
from rawquery_workers.spec.models import Stream

BASE = "https://api.example.com"


def stream(api_type: str = "rest", **fields: Any) -> Stream:
    entry = {"name": "items", **fields}
    if api_type == "rest":
        entry.setdefault("endpoint", "/items")
    else:
        entry.setdefault("query", "query { x }")
    spec = {
        "version": "1",
        "base_url": BASE,
        "type": api_type,
        "auth": {"type": "none"},
        "streams": [entry],
    }
    return parse_spec(spec).streams[0]


def only_fragment(hints: list[Any]) -> dict[str, Any]:
    assert len(hints) == 1, hints
    return hints[0].fragment


def spec_with(fragment: dict[str, Any], api_type: str = "rest") -> None:
    """The fragment merged into a stream gives a valid spec."""
    entry: dict[str, Any] = {"name": "items", **fragment}
    if api_type == "rest":
        entry["endpoint"] = "/items"
    else:
        entry["query"] = "query($cursor: String) { x }"
    parse_spec(
        {
            "version": "1",
            "base_url": BASE,
            "type": api_type,
            "auth": {"type": "none"},
            "streams": [entry],
        }
    )


def test_link_header_next_gives_link_header_pagination() -> None:
    headers = {
        "Link": '<https://api.github.com/repos?page=2>; rel="next", '
        '<https://api.github.com/repos?page=9>; rel="last"'
    }
    fragment = only_fragment(pagination_hints(stream(), [{"id": 1}], headers, 1))
    assert fragment == {"pagination": {"type": "link_header"}}
    spec_with(fragment)


def test_link_header_without_next_gives_nothing() -> None:
    headers = {"link": '<https://api.github.com/repos?page=1>; rel="first"'}
    assert pagination_hints(stream(), [{"id": 1}], headers, 1) == []
    assert next_link('<a>; rel="prev", <b>; rel="next last"') == "b"


def test_zendesk_next_page_url() -> None:
    body = {"tickets": [{"id": 1}], "next_page": f"{BASE}/tickets.json?page=2", "count": 40}
    fragment = only_fragment(pagination_hints(stream(data_path="tickets"), body, {}, 1))
    assert fragment == {"pagination": {"type": "next_url", "next_url_path": "next_page"}}
    spec_with(fragment)


def test_relative_next_url_in_links_object() -> None:
    body = {"data": [{"id": 1}], "links": {"next": "/items?page[cursor]=abc"}}
    fragment = only_fragment(pagination_hints(stream(data_path="data"), body, {}, 1))
    assert fragment["pagination"]["next_url_path"] == "links.next"


def test_hubspot_paging_next_after_cursor() -> None:
    body = {
        "results": [{"id": "1"}],
        "paging": {"next": {"after": "NTI1Cg%3D%3D", "link": f"{BASE}/contacts?after=NTI1"}},
    }
    fragment = only_fragment(pagination_hints(stream(data_path="results"), body, {}, 1))
    assert fragment == {
        "pagination": {"type": "cursor", "cursor_path": "paging.next.after", "param": "after"}
    }
    spec_with(fragment)


def test_slack_cursor_with_has_more() -> None:
    body = {
        "ok": True,
        "members": [{"id": "U1"}],
        "has_more": True,
        "response_metadata": {"next_cursor": "dXNlcjpVMEc5V0ZYTlo="},
    }
    fragment = only_fragment(pagination_hints(stream(data_path="members"), body, {}, 1))
    assert fragment["pagination"] == {
        "type": "cursor",
        "cursor_path": "response_metadata.next_cursor",
        "param": "cursor",
        "has_more_path": "has_more",
    }


def test_stripe_has_more_continues_after_last_id() -> None:
    body = {"object": "list", "data": [{"id": "cus_1"}, {"id": "cus_2"}], "has_more": True}
    fragment = only_fragment(pagination_hints(stream(data_path="data"), body, {}, 2))
    pagination = fragment["pagination"]
    assert pagination["param"] == "starting_after"
    assert pagination["has_more_path"] == "has_more"
    assert get_path(body, pagination["cursor_path"]) == "cus_2"
    spec_with(fragment)


def test_has_more_false_says_nothing() -> None:
    body = {"data": [{"id": "a"}], "has_more": False}
    assert pagination_hints(stream(data_path="data"), body, {}, 1) == []


def test_total_count_larger_than_page_gives_offset() -> None:
    body = {"items": [{"id": i} for i in range(25)], "total": 1000}
    fragment = only_fragment(pagination_hints(stream(data_path="items"), body, {}, 25))
    assert fragment["pagination"]["type"] == "offset"
    assert fragment["pagination"]["page_size"] == 25
    spec_with(fragment)


def test_total_count_with_page_number_gives_page_number() -> None:
    body = {"items": [{"id": 1}, {"id": 2}], "total_count": 30, "page": 1, "per_page": 2}
    fragment = only_fragment(pagination_hints(stream(data_path="items"), body, {}, 2))
    assert fragment["pagination"]["type"] == "page_number"
    spec_with(fragment)


def test_total_equal_to_page_is_not_pagination() -> None:
    body = {"items": [{"id": 1}], "count": 1}
    assert pagination_hints(stream(data_path="items"), body, {}, 1) == []


def test_stream_with_pagination_gets_no_pagination_hint() -> None:
    paged = stream(pagination={"type": "link_header"})
    assert pagination_hints(paged, [], {"Link": '<x>; rel="next"'}, 0) == []


def test_graphql_page_info() -> None:
    body = {
        "data": {
            "viewer": {
                "repositories": {
                    "nodes": [{"id": "R1"}],
                    "pageInfo": {"hasNextPage": True, "endCursor": "Y3Vyc29yOjE="},
                }
            }
        }
    }
    graphql = stream("graphql", data_path="data.viewer.repositories.nodes")
    fragment = only_fragment(pagination_hints(graphql, body, {}, 1, api_type="graphql"))
    assert fragment["pagination"] == {
        "type": "cursor",
        "cursor_variable": "cursor",
        "cursor_path": "data.viewer.repositories.pageInfo.endCursor",
        "has_more_path": "data.viewer.repositories.pageInfo.hasNextPage",
    }
    spec_with(fragment, "graphql")


def test_data_path_missing_with_one_obvious_array() -> None:
    body = {"results": [{"id": 1}], "paging": {"next": None}, "tags": ["a", "b"]}
    hint = data_path_hint(stream(), body)
    assert hint is not None and hint.fragment == {"data_path": "results"}
    assert "no data_path" in hint.message


def test_data_path_wrong_points_at_the_array() -> None:
    body = {"data": {"items": [{"id": 1}]}}
    hint = data_path_hint(stream(data_path="items"), body)
    assert hint is not None and hint.fragment == {"data_path": "data.items"}
    assert "does not point" in hint.message


def test_data_path_right_or_ambiguous_gives_nothing() -> None:
    assert data_path_hint(stream(data_path="data"), {"data": [{"id": 1}]}) is None
    assert data_path_hint(stream(), [{"id": 1}]) is None
    two = {"users": [{"id": 1}], "groups": [{"id": 2}]}
    assert obvious_array_path(two) is None
    assert obvious_array_path({"data": [{"id": 1}], "errors": [{"message": "x"}]}) == "data"


def test_timestamp_strings_and_dates() -> None:
    columns = {
        "created_at": ["2024-01-31T10:00:00Z", None, "2024-02-01T08:30:00.123+02:00"],
        "birthday": ["1990-05-01", "2001-12-31"],
        "name": ["a", "2024-01-01"],
        "updated": [1706695200, 1706695300],
        "count": [1706695200],
        "typed": ["2024-01-31T10:00:00Z"],
    }
    hint = type_hints(columns, declared={"typed"})
    assert hint is not None
    assert hint.fragment == {
        "types": {"created_at": "timestamp", "birthday": "date", "updated": "timestamp"}
    }
    spec_with(hint.fragment)


def test_no_time_columns_no_hint() -> None:
    assert type_hints({"name": ["x"], "empty": [None]}, declared=()) is None
    assert looks_like_time("created_at", [True]) is None


def test_walk_objects_skips_lists_and_dotted_keys() -> None:
    body = {"a": {"b": 1, "c.d": 2}, "items": [{"next": "x"}]}
    assert [p for p, _ in walk_objects(body)] == ["a", "items", "a.b"]


def test_fragment_json_is_indented_json() -> None:
    headers = {"Link": '<https://x/items?page=2>; rel="next"'}
    hint = pagination_hints(stream(), [{"id": 1}], headers, 1)[0]
    assert hint.fragment_json().startswith('{\n  "pagination": {')


def test_jsonpath_negative_index_reads_from_the_end() -> None:
    assert get_path({"data": [{"id": 1}, {"id": 2}]}, "data.-1.id") == 2
    assert get_path({"data": []}, "data.-1.id") is MISSING
    assert get_path({"-1": "key"}, "-1") == "key"
