"""The API as the built app serves it: mounted inside Reflex, whose pages take every other path."""

from __future__ import annotations

import httpx

from tests.e2e.conftest import Loom


def test_an_unknown_api_route_in_the_built_app_answers_json_404_not_the_boards_page(loom: Loom) -> None:
    response = httpx.get(f"{loom.url}/api/migrations/x/nope")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert "No such route" in response.json()["message"]
    assert httpx.get(f"{loom.url}/api/healthz").status_code == 200
