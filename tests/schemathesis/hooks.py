"""Schemathesis hooks for the edge: every request carries a fresh Firebase-
shaped ID token, fetched from the test's token server (EDGE_TOKEN_URL).

The tokens live a few seconds, so that `GET /balance/stream` (which ends when
its token expires) ends within the request timeout like any other answer.
"""

import os
import urllib.request

import schemathesis

TOKEN_URL = os.environ["EDGE_TOKEN_URL"]


@schemathesis.auth(refresh_interval=None)
class FreshIdToken:
    def get(self, case, ctx):
        with urllib.request.urlopen(TOKEN_URL, timeout=5) as answer:
            return answer.read().decode()

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"
