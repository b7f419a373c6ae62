"""Slack Web API: `users.list` and `conversations.list` (docs.slack.dev/apis/web-api/pagination,
/reference/methods/users.list, /reference/methods/conversations.list).

Followed from the docs:
- every answer is HTTP 200 with `"ok"`: errors are `{"ok": false, "error": "invalid_auth"}`
  (a wrong token), `"not_authed"` (none), `"invalid_cursor"`, `"invalid_limit"`;
- the token comes as `Authorization: Bearer xoxb-...` (or a `token` parameter);
- cursor pagination: `cursor` and `limit` parameters; the answer carries
  `response_metadata.next_cursor`, an opaque base64 string (`dXNlcjpVMDYxTkZUVDI=`,
  i.e. `user:U061NFTT2`), and an empty string on the last page;
- "fewer than the requested number of items may be returned, even if the end of the list
  hasn't been reached": pages here are cut at `PAGE_CAP` items whatever `limit` says;
- `users.list` -> `{"ok", "members": [...], "cache_ts", "response_metadata"}`; deactivated
  users stay in the list with `deleted: true`; `updated` is epoch seconds;
- `conversations.list` -> `{"ok", "channels": [...], "response_metadata"}`, filtered by
  `types` (default `public_channel`) and `exclude_archived`; `created` is epoch seconds;
- `limit` must be at most 1000; Tier 2 methods (about 20 requests a minute); over the
  limit Slack answers HTTP 429 with `Retry-After` (seconds) and `{"ok": false, "error":
  "ratelimited"}` (`throttle` names which calls, counted from 1, get that answer).
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from tests.support.api_server import ApiServer, RecordedRequest, Reply
from tests.support.services import ServiceFake, random_id

PAGE_CAP = 170  # Slack may answer fewer items than `limit` asks for
_ID = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"


class Slack(ServiceFake):
    prefix = "/api/"

    def __init__(
        self,
        server: ApiServer,
        token: str = "xoxb-1234567890-0987654321-FakeBotTokenAbc",
        users: int = 420,
        channels: int = 60,
        seed: int = 11,
    ) -> None:
        super().__init__(server, seed=seed, start=datetime(2024, 2, 1, tzinfo=UTC))
        self.token = token
        self.team = "T" + random_id(self.random, 8, _ID)
        self.throttle: set[int] = set()  # numbers of the calls answered 429
        self.calls = 0
        self.users: list[dict[str, Any]] = []
        self.channels: list[dict[str, Any]] = []
        for _ in range(users):
            self.add_user()
        for _ in range(channels):
            self.add_channel()
        server.route("/api/users.list", self._users_list, methods=("GET", "POST"))
        server.route("/api/conversations.list", self._conversations_list, methods=("GET", "POST"))

    # --- data -----------------------------------------------------------------------------

    def add_user(self) -> dict[str, Any]:
        rng = self.random
        n = len(self.users) + 1
        uid = "U" + random_id(rng, 10, _ID)
        bot = rng.random() < 0.05
        user = {
            "id": uid,
            "team_id": self.team,
            "name": f"user{n}",
            "deleted": False,
            "color": "9f69e7",
            "real_name": f"User Number {n}",
            "tz": rng.choice(["America/Los_Angeles", "Europe/Paris", "Asia/Tokyo"]),
            "tz_label": "Pacific Standard Time",
            "tz_offset": -28800,
            "profile": {
                "title": rng.choice(["", "Engineer", "Designer"]),
                "phone": "",
                "real_name": f"User Number {n}",
                "display_name": f"user{n}",
                "email": None if bot else f"user{n}@example.com",
                "image_24": f"https://avatars.slack-edge.com/{uid}_24.png",
                "team": self.team,
            },
            "is_admin": rng.random() < 0.08,
            "is_owner": False,
            "is_bot": bot,
            "is_app_user": False,
            "updated": int(self.tick(rng.randint(1, 5000)).timestamp()),
        }
        self.users.append(user)
        return user

    def add_channel(self) -> dict[str, Any]:
        rng = self.random
        n = len(self.channels) + 1
        channel = {
            "id": "C" + random_id(rng, 10, _ID),
            "name": f"channel-{n}",
            "is_channel": True,
            "is_private": False,
            "is_archived": rng.random() < 0.1,
            "is_general": n == 1,
            "created": int(self.tick(rng.randint(60, 90000)).timestamp()),
            "creator": rng.choice(self.users)["id"] if self.users else "",
            "num_members": rng.randint(1, 400),
            "topic": {"value": f"topic {n}", "creator": "", "last_set": 0},
            "purpose": {"value": f"purpose of {n}", "creator": "", "last_set": 0},
        }
        self.channels.append(channel)
        return channel

    def mutate(self) -> None:
        """A few users change (profile, admin flag, deactivation), some join; a channel is
        archived and new ones are created."""
        self.tick(86400)
        for user in self.random.sample(self.users, 25):
            user["real_name"] = user["real_name"] + " (renamed)"
            user["profile"] = {**user["profile"], "real_name": user["real_name"]}
            user["is_admin"] = not user["is_admin"]
            user["updated"] = int(self.tick(30).timestamp())
        self.users[3]["deleted"] = True
        for _ in range(35):
            self.add_user()
        self.channels[5]["is_archived"] = True
        for _ in range(7):
            self.add_channel()

    # --- the API --------------------------------------------------------------------------

    def _auth_error(self, request: RecordedRequest) -> str | None:
        auth = request.header("authorization") or ""
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
        token = token or request.params.get("token")
        if not token:
            return "not_authed"
        return None if token == self.token else "invalid_auth"

    def _page(
        self, request: RecordedRequest, items: list[dict[str, Any]], kind: str, key: str
    ) -> Reply:
        self.calls += 1
        if self.calls in self.throttle:
            return Reply({"ok": False, "error": "ratelimited"}, 429, headers={"Retry-After": "1"})
        if error := self._auth_error(request):
            return Reply({"ok": False, "error": error})
        params = request.params
        try:
            limit = int(params.get("limit", "0")) or len(items)
        except ValueError:
            return Reply({"ok": False, "error": "invalid_limit"})
        if limit > 1000 or limit < 0:
            return Reply({"ok": False, "error": "invalid_limit"})
        start = 0
        if cursor := params.get("cursor"):
            start_id = _decode_cursor(cursor, kind)
            ids = [i["id"] for i in items]
            if start_id not in ids:
                return Reply({"ok": False, "error": "invalid_cursor"})
            start = ids.index(start_id)
        page = items[start : start + min(limit, PAGE_CAP)]
        end = start + len(page)
        next_cursor = _encode_cursor(kind, items[end]["id"]) if end < len(items) else ""
        return Reply(
            {"ok": True, key: page, "response_metadata": {"next_cursor": next_cursor}},
            headers={"X-Slack-Req-Id": random_id(self.random, 32)},
        )

    def _users_list(self, request: RecordedRequest) -> Reply:
        reply = self._page(request, self.users, "user", "members")
        if isinstance(reply.body, dict) and reply.body.get("ok"):
            reply.body["cache_ts"] = int(self.now.timestamp())
        return reply

    def _conversations_list(self, request: RecordedRequest) -> Reply:
        types = set(request.params.get("types", "public_channel").split(","))
        exclude = request.params.get("exclude_archived", "false").lower() in ("true", "1")
        listed = [
            c
            for c in self.channels
            if "public_channel" in types and not (exclude and c["is_archived"])
        ]
        return self._page(request, listed, "channel", "channels")


def _encode_cursor(kind: str, item_id: str) -> str:
    return base64.b64encode(f"{kind}:{item_id}".encode()).decode()


def _decode_cursor(cursor: str, kind: str) -> str | None:
    try:
        text = base64.b64decode(cursor, validate=True).decode()
    except ValueError:
        return None
    prefix, _, item_id = text.partition(":")
    return item_id if prefix == kind else None
