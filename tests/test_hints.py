"""Spec hints as pure functions: response shapes of real APIs in, spec fragments out."""

from __future__ import annotations

from typing import Any

from rawquery_workers.authoring.hints import (
    data_path_hint,
    error_path_hint,
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
    hints = pagination_hints(stream(data_path="data"), body, {}, 2)
    assert only_fragment(hints) == {
        "pagination": {
            "type": "cursor",
            "cursor_path": "last_record.id",
            "param": "starting_after",
            "has_more_path": "has_more",
        }
    }
    assert "last record's 'id'" in hints[0].message
    spec_with(hints[0].fragment)


def test_has_more_flag_path_and_id_field_are_the_responses_own() -> None:
    body = {"results": [{"uuid": "u1", "name": "a"}], "meta": {"hasMore": True}}
    fragment = only_fragment(pagination_hints(stream(data_path="results"), body, {}, 1))
    assert fragment["pagination"]["cursor_path"] == "last_record.uuid"
    assert fragment["pagination"]["has_more_path"] == "meta.hasMore"
    spec_with(fragment)


def test_has_more_without_record_ids_gives_no_last_record_cursor() -> None:
    body = {"data": [{"name": "a"}], "has_more": True}
    fragment = only_fragment(pagination_hints(stream(data_path="data"), body, {}, 1))
    assert fragment["pagination"]["cursor_path"] == "<path of the next-page token>"
    # A token in the body wins over the last record's id.
    body = {"data": [{"id": "a"}], "has_more": True, "next_cursor": "abc"}
    fragment = only_fragment(pagination_hints(stream(data_path="data"), body, {}, 1))
    assert fragment["pagination"]["cursor_path"] == "next_cursor"


def test_has_more_false_says_nothing() -> None:
    body = {"data": [{"id": "a"}], "has_more": False}
    assert pagination_hints(stream(data_path="data"), body, {}, 1) == []


def test_total_count_larger_than_page_gives_offset() -> None:
    body = {"items": [{"id": i} for i in range(25)], "total": 1000}
    hints = pagination_hints(stream(data_path="items"), body, {}, 25)
    fragment = only_fragment(hints)
    assert fragment["pagination"]["type"] == "offset"
    assert fragment["pagination"]["page_size"] == 25
    assert fragment["pagination"]["total_path"] == "total"
    assert "total_path 'total'" in hints[0].message
    spec_with(fragment)


def test_total_count_with_page_number_gives_page_number() -> None:
    body = {"items": [{"id": 1}, {"id": 2}], "total_count": 30, "page": 1, "per_page": 2}
    fragment = only_fragment(pagination_hints(stream(data_path="items"), body, {}, 2))
    assert fragment["pagination"]["type"] == "page_number"
    assert fragment["pagination"]["total_path"] == "total_count"
    spec_with(fragment)


def test_google_total_size_nested_gives_total_path() -> None:
    body = {"people": [{"id": 1}], "meta": {"totalSize": 120}}
    fragment = only_fragment(pagination_hints(stream(data_path="people"), body, {}, 1))
    assert fragment["pagination"]["total_path"] == "meta.totalSize"
    spec_with(fragment)


def test_total_equal_to_page_is_not_pagination() -> None:
    body = {"items": [{"id": 1}], "count": 1}
    assert pagination_hints(stream(data_path="items"), body, {}, 1) == []


def test_total_that_is_not_a_count_gives_nothing() -> None:
    body = {"items": [{"id": 1}, {"id": 2}], "total": "30", "count": True}
    assert pagination_hints(stream(data_path="items"), body, {}, 2) == []


def test_gitlab_x_next_page_header_gives_cursor_header() -> None:
    headers = {"X-Next-Page": "2", "X-Page": "1", "X-Per-Page": "20", "X-Total": "57"}
    hints = pagination_hints(stream(), [{"id": 1}], headers, 1)
    assert only_fragment(hints) == {
        "pagination": {"type": "cursor", "cursor_header": "X-Next-Page", "param": "page"}
    }
    assert "X-Total header says 57 records" in hints[0].message
    spec_with(hints[0].fragment)
    # httpx hands header names lowercased: the fragment still spells the header's name.
    lowered = pagination_hints(stream(), [{"id": 1}], {"x-next-page": "3"}, 1)
    assert only_fragment(lowered)["pagination"]["cursor_header"] == "X-Next-Page"
    assert "X-Total" not in lowered[0].message


def test_gitlab_last_page_or_x_total_alone_gives_nothing() -> None:
    assert pagination_hints(stream(), [{"id": 1}], {"X-Next-Page": "", "X-Total": "57"}, 1) == []
    assert pagination_hints(stream(), [{"id": 1}], {"X-Total": "57"}, 1) == []


def test_link_header_hint_notes_x_total() -> None:
    headers = {"Link": '<https://x/items?page=2>; rel="next"', "X-Total": "1200"}
    [hint] = pagination_hints(stream(), [{"id": 1}], headers, 1)
    assert hint.fragment == {"pagination": {"type": "link_header"}}
    assert "X-Total header says 1200 records" in hint.message


def test_next_url_in_a_header_other_than_link() -> None:
    headers = {"X-Next-Url": f"{BASE}/items?page=2", "X-Request-Id": "r1"}
    hints = pagination_hints(stream(), [{"id": 1}], headers, 1)
    assert only_fragment(hints) == {
        "pagination": {"type": "next_url", "next_url_header": "X-Next-Url"}
    }
    assert "X-Next-Url header" in hints[0].message
    spec_with(hints[0].fragment)
    relative = pagination_hints(stream(), [{"id": 1}], {"next-page-url": "/items?page=2"}, 1)
    assert only_fragment(relative)["pagination"]["next_url_header"] == "Next-Page-Url"


def test_next_url_header_empty_or_not_a_url_or_unrelated_gives_nothing() -> None:
    for headers in (
        {"X-Next-Url": ""},
        {"X-Next-Url": "abc"},
        {"X-Request-Url": f"{BASE}/items?page=2"},
    ):
        assert pagination_hints(stream(), [{"id": 1}], headers, 1) == [], headers


def test_slack_ok_false_suggests_error_path_quoting_the_error() -> None:
    hint = error_path_hint({"ok": False, "error": "invalid_auth"}, 200, None)
    assert hint is not None and hint.kind == "error_path"
    assert hint.fragment == {"error_path": "error"}
    assert "'invalid_auth'" in hint.message and "'ok' is false" in hint.message
    spec_with(hint.fragment)
    telegram = error_path_hint({"ok": False, "error_code": 401, "description": "Nope"}, 200, None)
    assert telegram is not None and telegram.fragment == {"error_path": "description"}
    cloudflare = {"success": False, "errors": [{"code": 10000, "message": "bad"}], "result": None}
    hint = error_path_hint(cloudflare, 200, None)
    assert hint is not None and hint.fragment == {"error_path": "errors"}
    assert '"message":"bad"' in hint.message


def test_top_level_error_string_with_http_200_suggests_error_path() -> None:
    hint = error_path_hint({"error": "Invalid API key"}, 200, None)
    assert hint is not None and hint.fragment == {"error_path": "error"}
    assert "HTTP 200" in hint.message and "'Invalid API key'" in hint.message
    hint = error_path_hint({"errors": "rate limited", "data": []}, 200, None)
    assert hint is not None and hint.fragment == {"error_path": "errors"}


def test_no_error_path_hint_for_good_answers_or_when_set() -> None:
    for body in (
        {"ok": True, "members": [{"id": "U1"}]},
        {"error": None, "data": [{"id": 1}]},
        {"error": "", "errors": []},
        {"data": None, "errors": [{"message": "GraphQL: only with a failure flag"}]},
        {"ok": False},
        [{"error": "in a record"}],
    ):
        assert error_path_hint(body, 200, None) is None, body
    assert error_path_hint({"ok": False, "error": "invalid_auth"}, 200, "error") is None
    assert error_path_hint({"error": "gone"}, 404, None) is None


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
