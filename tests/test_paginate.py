"""Paginators driven by hand: no server, no I/O, just responses fed to `update`."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from rawquery_workers.errors import PaginationLoopError, ResponseError
from rawquery_workers.http.redact import Redactor
from rawquery_workers.paginate import (
    PageResponse,
    Paginator,
    RequestSpec,
    SinglePagePaginator,
    paginator_for,
)
from rawquery_workers.paginate.cursor import CursorPaginator
from rawquery_workers.paginate.link_header import LinkHeaderPaginator, parse_link_header
from rawquery_workers.paginate.next_url import NextUrlPaginator
from rawquery_workers.paginate.offset import OffsetPaginator
from rawquery_workers.paginate.page_number import PageNumberPaginator
from rawquery_workers.spec.jsonpath import MISSING, get_path
from rawquery_workers.spec.models import (
    CursorPagination,
    LinkHeaderPagination,
    NextUrlPagination,
    OffsetPagination,
    PageNumberPagination,
)

BASE = RequestSpec("GET", "https://api.example.com/v1/items", {"sort": "id"})


def page(body: Any = None, url: str = BASE.url, **headers: str) -> PageResponse:
    return PageResponse(url=url, body=body, headers=headers)


def offset(**options: Any) -> OffsetPaginator:
    return OffsetPaginator(OffsetPagination(type="offset", **options), stream="items")


def cursor(api_type: str = "rest", **options: Any) -> CursorPaginator:
    spec = CursorPagination(type="cursor", **options)
    return CursorPaginator(spec, api_type=api_type, stream="items")  # type: ignore[arg-type]


# --- RequestSpec and get_path --------------------------------------------------------------


def test_request_spec_updates_are_copies() -> None:
    moved = BASE.with_params({"offset": 10})
    assert moved.params == {"sort": "id", "offset": 10} and BASE.params == {"sort": "id"}
    assert BASE.with_url("https://api.example.com/v1/items?page=2").params == {}
    assert moved.full_url == "https://api.example.com/v1/items?sort=id&offset=10"
    gql = RequestSpec("POST", "https://x/graphql", {}, {"query": "q", "variables": {"n": 1}})
    assert gql.with_variable("cursor", "c1").json == {
        "query": "q",
        "variables": {"n": 1, "cursor": "c1"},
    }
    assert gql.with_variable("n", None).json == {"query": "q", "variables": {}}


def test_get_path_walks_dicts_and_list_indexes() -> None:
    body = {"a": {"b": [{"c": 1}, {"c": None}]}, "top": 0}
    assert get_path(body, "a.b.0.c") == 1
    assert get_path(body, "a.b.1.c") is None  # a JSON null is a value...
    assert get_path(body, "a.b.2.c") is MISSING  # ...absence is not
    assert get_path(body, "a.x") is MISSING
    assert get_path(body, "top.deeper") is MISSING
    assert get_path(body, "") is body
    assert get_path(body, "a.missing", default="d") == "d"


# --- single, offset, page number -----------------------------------------------------------


def test_single_page_makes_one_request() -> None:
    paginator = SinglePagePaginator()
    assert paginator.first_request(BASE) == BASE
    paginator.update(page([{"id": 1}]), 1)
    assert paginator.next_request(BASE) is None
    assert paginator.has_next_page is False


def test_offset_walks_until_a_short_page() -> None:
    paginator = offset(page_size=2)
    request = paginator.first_request(BASE)
    assert request.params == {"sort": "id", "offset": 0, "limit": 2}
    paginator.update(page(), 2)
    assert paginator.state()["offset"] == 2
    request = paginator.next_request(request)
    assert request is not None and request.params["offset"] == 2
    paginator.update(page(), 1)
    assert paginator.next_request(request) is None


def test_offset_stops_at_an_empty_page_and_honours_start_and_no_limit_param() -> None:
    paginator = offset(param="skip", limit_param=None, page_size=3, start_offset=6)
    request = paginator.first_request(BASE)
    assert request.params == {"sort": "id", "skip": 6}
    paginator.update(page(), 3)
    assert paginator.next_reference == "skip=9"
    paginator.update(page(), 0)
    assert paginator.next_request(request) is None


def test_offset_without_limit_param_or_page_size_runs_until_an_empty_page() -> None:
    paginator = offset(limit_param=None)  # the API's own page size (say 20) is unknown
    request = paginator.first_request(BASE)
    assert request.params == {"sort": "id", "offset": 0}
    paginator.update(page(), 20)
    request = paginator.next_request(request)
    assert request is not None and request.params["offset"] == 20
    paginator.update(page(), 0)
    assert paginator.next_request(request) is None


def test_offset_advances_by_the_records_received_when_the_api_sends_more() -> None:
    paginator = offset(page_size=2)
    paginator.first_request(BASE)
    paginator.update(page(), 5)
    assert paginator.state()["offset"] == 5


def test_offset_restore_resumes_at_the_saved_offset() -> None:
    paginator = offset(page_size=10)
    paginator.restore({"offset": 40})
    assert paginator.first_request(BASE).params["offset"] == 40
    with pytest.raises(ValueError, match="offset"):
        offset().restore({"url": "x"})


def test_page_number_with_page_size_stops_on_a_short_page() -> None:
    spec = PageNumberPagination(
        type="page_number", param="p", page_size_param="per_page", page_size=2, start_page=1
    )
    paginator = PageNumberPaginator(spec)
    request = paginator.first_request(BASE)
    assert request.params == {"sort": "id", "p": 1, "per_page": 2}
    paginator.update(page(), 2)
    request = paginator.next_request(request)
    assert request is not None and request.params["p"] == 2
    assert paginator.state()["page"] == 2
    paginator.update(page(), 1)
    assert paginator.next_request(request) is None


def test_page_number_without_page_size_runs_until_an_empty_page() -> None:
    paginator = PageNumberPaginator(PageNumberPagination(type="page_number", start_page=0))
    request = paginator.first_request(BASE)
    for expected in (1, 2):
        paginator.update(page(), 7)
        request = paginator.next_request(request)
        assert request is not None and request.params["page"] == expected
    paginator.update(page(), 0)
    assert paginator.next_request(request) is None
    resumed = PageNumberPaginator(PageNumberPagination(type="page_number"))
    resumed.restore({"page": 5})
    assert resumed.first_request(BASE).params["page"] == 5


# --- cursor --------------------------------------------------------------------------------


def test_rest_cursor_sends_the_token_as_a_query_param() -> None:
    paginator = cursor(cursor_path="paging.next.after", param="after")
    request = paginator.first_request(BASE)
    assert "after" not in request.params
    paginator.update(page({"paging": {"next": {"after": "abc"}}}), 100)
    request = paginator.next_request(request)
    assert request is not None and request.params == {"sort": "id", "after": "abc"}
    assert paginator.state() == {"cursor": "abc"} and paginator.next_reference == "abc"
    paginator.update(page({"results": []}), 0)  # no paging: the end
    assert paginator.next_request(request) is None


@pytest.mark.parametrize("body", [{"next": None}, {}, {"next": ""}, {"other": 1}, None])
def test_cursor_stops_on_a_null_missing_or_empty_token(body: Any) -> None:
    paginator = cursor(cursor_path="next", param="c")
    paginator.first_request(BASE)
    paginator.update(page(body), 10)
    assert paginator.has_next_page is False
    assert paginator.next_request(BASE) is None


@pytest.mark.parametrize("more", [False, "false", 0, None])
def test_cursor_stops_when_has_more_is_false_even_with_a_token(more: Any) -> None:
    paginator = cursor(cursor_path="meta.next", param="c", has_more_path="meta.has_more")
    paginator.update(page({"meta": {"next": "t1", "has_more": more}}), 10)
    assert paginator.has_next_page is False


def test_cursor_continues_when_has_more_is_true_and_accepts_numeric_tokens() -> None:
    paginator = cursor(cursor_path="meta.next", param="c", has_more_path="meta.has_more")
    paginator.update(page({"meta": {"next": 1234, "has_more": True}}), 10)
    request = paginator.next_request(BASE)
    assert request is not None and request.params["c"] == 1234


def test_graphql_cursor_goes_into_the_variables() -> None:
    base = RequestSpec("POST", "https://x/graphql", {}, {"query": "q", "variables": {}})
    paginator = cursor(
        "graphql",
        cursor_path="data.repos.pageInfo.endCursor",
        cursor_variable="after",
        has_more_path="data.repos.pageInfo.hasNextPage",
    )
    assert paginator.first_request(base).json == {"query": "q", "variables": {}}
    info = {"hasNextPage": True, "endCursor": "Y3Vyc29yOjI="}
    paginator.update(page({"data": {"repos": {"pageInfo": info}}}), 2)
    request = paginator.next_request(base)
    assert request is not None and request.json == {
        "query": "q",
        "variables": {"after": "Y3Vyc29yOjI="},
    }
    restored = cursor("graphql", cursor_path="x", cursor_variable="after")
    restored.restore({"cursor": "zz"})
    assert restored.first_request(base).json == {"query": "q", "variables": {"after": "zz"}}


def test_cursor_path_pointing_at_an_object_is_a_clear_error() -> None:
    paginator = cursor(cursor_path="paging.next", param="after")
    with pytest.raises(ResponseError, match="cursor_path 'paging.next' holds a dict"):
        paginator.update(page({"paging": {"next": {"after": "x"}}}), 1)


def test_a_repeated_token_is_a_loop_error_like_singer() -> None:
    paginator = cursor(cursor_path="next", param="c")
    for token in ("a", "b", "c", "d", "e", "f"):
        paginator.update(page({"next": token}), 1)
    with pytest.raises(PaginationLoopError) as info:
        paginator.update(page({"next": "c"}), 1)
    assert str(info.value) == (
        "stream items: the API sent next-page token 'c' twice (page 7); "
        "stopping to avoid an infinite loop"
    )


def test_the_loop_message_truncates_and_redacts_the_token() -> None:
    secret = "sk_live_abcdefghijklmnop"
    spec = CursorPagination(type="cursor", cursor_path="next", param="c")
    paginator = CursorPaginator(spec, stream="s", redactor=Redactor([secret]))
    long_token = secret + "x" * 100
    paginator.update(page({"next": long_token}), 1)
    with pytest.raises(PaginationLoopError) as info:
        paginator.update(page({"next": long_token}), 1)
    message = str(info.value)
    assert secret not in message and "'***xxxx" in message and "…' twice (page 2)" in message


def test_a_restored_token_counts_as_seen() -> None:
    paginator = cursor(cursor_path="next", param="c")
    paginator.restore({"cursor": "t9"})
    with pytest.raises(PaginationLoopError, match="'t9' twice"):
        paginator.update(page({"next": "t9"}), 1)


# --- link header ---------------------------------------------------------------------------


def test_parse_link_header_handles_several_links_quotes_and_commas_in_urls() -> None:
    value = (
        '<https://api.github.com/repos?page=2&q=a,b>; rel="next", '
        "<https://api.github.com/repos?page=9>; rel=last, "
        '</repos?page=1>;rel="prev first";title="a, b; c"'
    )
    assert parse_link_header(value) == [
        ("https://api.github.com/repos?page=2&q=a,b", {"rel": "next"}),
        ("https://api.github.com/repos?page=9", {"rel": "last"}),
        ("/repos?page=1", {"rel": "prev first", "title": "a, b; c"}),
    ]


def link_paginator(rel: str = "next") -> LinkHeaderPaginator:
    return LinkHeaderPaginator(LinkHeaderPagination(type="link_header", rel=rel), stream="repos")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('<https://api.example.com/v1/items?page=2>; rel="next"', "/v1/items?page=2"),
        ("<https://api.example.com/v1/items?page=2>; rel=next", "/v1/items?page=2"),
        ('<https://api.example.com/v1/items?page=9>; rel="next last"', "/v1/items?page=9"),
        ('<items?page=3>; rel="next"', "/v1/items?page=3"),
        ('</v2/things?after=x>; REL="Next"', "/v2/things?after=x"),
        ('<?page=4>; rel="next"', "/v1/items?page=4"),
        (
            '<https://api.example.com/v1/items?page=1>; rel="prev", <?page=3>; rel="next"',
            "/v1/items?page=3",
        ),
    ],
)
def test_link_header_finds_next_and_resolves_relative_urls(header: str, expected: str) -> None:
    paginator = link_paginator()
    request = paginator.first_request(BASE)
    assert request == BASE
    paginator.update(page(None, "https://api.example.com/v1/items?page=1", Link=header), 30)
    request = paginator.next_request(request)
    assert request is not None
    assert request.url == "https://api.example.com" + expected and request.params == {}
    assert paginator.state() == {"url": request.url}


@pytest.mark.parametrize("headers", [{}, {"Link": '<https://x/?page=1>; rel="prev"'}])
def test_link_header_without_next_stops(headers: dict[str, str]) -> None:
    paginator = link_paginator()
    paginator.update(page(None, **headers), 30)
    assert paginator.next_request(BASE) is None and paginator.next_reference is None


def test_link_header_reads_httpx_headers_with_several_link_lines_and_custom_rel() -> None:
    headers = httpx.Headers([("Link", '</a>; rel="prev"'), ("link", '</b>; rel="more"')])
    paginator = link_paginator("more")
    paginator.update(PageResponse(url="https://h/x", body=None, headers=headers), 1)
    assert paginator.next_reference == "https://h/b"


def test_link_header_pointing_back_at_the_first_page_is_a_loop() -> None:
    paginator = link_paginator()
    first = paginator.first_request(BASE)
    with pytest.raises(PaginationLoopError, match=r"next-page URL .* twice \(page 1\)"):
        paginator.update(page(None, Link=f'<{first.full_url}>; rel="next"'), 3)


# --- next url ------------------------------------------------------------------------------


def next_url_paginator(
    path: str = "next_page", redactor: Redactor | None = None
) -> NextUrlPaginator:
    spec = NextUrlPagination(type="next_url", next_url_path=path)
    return NextUrlPaginator(spec, stream="tickets", redactor=redactor)


def test_next_url_follows_absolute_and_relative_urls() -> None:
    paginator = next_url_paginator("links.next")
    paginator.update(page({"links": {"next": "https://api.example.com/v1/items?p=2"}}), 1)
    request = paginator.next_request(BASE)
    assert request == RequestSpec("GET", "https://api.example.com/v1/items?p=2", {})
    paginator.update(page({"links": {"next": "/v1/items?p=3"}}, request.url), 1)
    request = paginator.next_request(request)
    assert request is not None and request.url == "https://api.example.com/v1/items?p=3"


@pytest.mark.parametrize("body", [{"next_page": None}, {"next_page": ""}, {}, {"next_page": " "}])
def test_next_url_stops_when_null_missing_or_empty(body: Any) -> None:
    paginator = next_url_paginator()
    paginator.update(page(body), 1)
    assert paginator.next_request(BASE) is None


def test_next_url_that_is_not_a_string_names_the_fix() -> None:
    paginator = next_url_paginator("paging.next")
    with pytest.raises(ResponseError, match="holds a dict, not a URL.*paging.next.link"):
        paginator.update(page({"paging": {"next": {"link": "x"}}}), 1)


def test_next_url_drops_query_params_that_echo_a_secret_and_restores() -> None:
    paginator = next_url_paginator(redactor=Redactor(["k3y-s3cr3t"]))
    paginator.update(
        page({"next_page": "https://api.example.com/v1/items?page=2&api_key=k3y-s3cr3t"}), 1
    )
    assert paginator.state() == {"url": "https://api.example.com/v1/items?page=2"}
    resumed = next_url_paginator()
    resumed.restore(paginator.state())
    assert resumed.first_request(BASE).url == "https://api.example.com/v1/items?page=2"
    with pytest.raises(ValueError, match="url"):
        next_url_paginator().restore({"url": None})


# --- choosing the paginator ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        (None, SinglePagePaginator),
        (OffsetPagination(type="offset"), OffsetPaginator),
        (CursorPagination(type="cursor", cursor_path="n", param="c"), CursorPaginator),
        (PageNumberPagination(type="page_number"), PageNumberPaginator),
        (LinkHeaderPagination(type="link_header"), LinkHeaderPaginator),
        (NextUrlPagination(type="next_url", next_url_path="n"), NextUrlPaginator),
    ],
)
def test_paginator_for_picks_the_class_from_the_spec_model(spec: Any, kind: type) -> None:
    paginator = paginator_for(spec, "rest", stream="s")
    assert type(paginator) is kind and paginator.stream == "s"


def test_paginator_for_passes_the_api_type_and_makes_fresh_instances() -> None:
    spec = CursorPagination(type="cursor", cursor_path="n", cursor_variable="after")
    first: Paginator = paginator_for(spec, "graphql")
    assert first.api_type == "graphql" and paginator_for(spec, "graphql") is not first


# --- the end rule of offset and page_number walks (paginate/page_end.py) -------------------


def test_a_capped_page_size_is_followed_to_the_end() -> None:
    # asked for 1000, the API caps at 100: pages of 100 are full pages, 87 is the last
    paginator = offset(page_size=1000)
    request = paginator.first_request(BASE)
    for expected in (0, 100):
        assert request is not None and request.params["offset"] == expected
        paginator.update(page(), 100)
        request = paginator.next_request(request)
    assert request is not None and request.params["offset"] == 200
    paginator.update(page(), 87)
    assert paginator.next_request(request) is None
    assert paginator.end_warning is None


def test_total_path_ends_the_walk_and_warns_when_fewer_landed() -> None:
    paginator = offset(page_size=2, total_path="meta.total")
    request = paginator.first_request(BASE)
    paginator.update(page({"meta": {"total": 4}}), 2)
    request = paginator.next_request(request)
    assert request is not None
    paginator.update(page({"meta": {"total": 4}}), 2)
    assert paginator.next_request(request) is None  # the total is reached: no empty page
    short = offset(page_size=2, total_path="meta.total")
    short.first_request(BASE)
    short.update(page({"meta": {"total": 9}}), 2)
    short.update(page({"meta": {"total": 9}}), 0)
    assert not short.has_next_page
    assert "reported 9 records" in (short.end_warning or "") and "received 2" in short.end_warning


def test_has_more_path_false_ends_a_page_number_walk() -> None:
    spec = PageNumberPagination(type="page_number", has_more_path="has_more")
    paginator = PageNumberPaginator(spec)
    paginator.first_request(BASE)
    paginator.update(page({"has_more": True}), 3)
    assert paginator.has_next_page
    paginator.update(page({"has_more": False}), 3)
    assert not paginator.has_next_page


def test_the_end_rule_survives_a_resume() -> None:
    first = offset(page_size=50)
    first.first_request(BASE)
    first.update(page(), 10)
    resumed = offset(page_size=50)
    resumed.restore(first.state())
    resumed.first_request(BASE)
    resumed.update(page(), 4)  # shorter than the largest page before the resume: the end
    assert not resumed.has_next_page
    old = offset(page_size=50)
    old.restore({"offset": 10})  # a state saved before the rule kept its bookkeeping
    assert old.has_next_page and old.first_request(BASE).params["offset"] == 10


def test_a_total_that_is_not_a_count_is_an_error() -> None:
    paginator = offset(total_path="total")
    paginator.first_request(BASE)
    with pytest.raises(ResponseError, match="total_path 'total'"):
        paginator.update(page({"total": "many"}), 1)
