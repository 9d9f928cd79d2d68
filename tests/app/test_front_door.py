"""GET /, the bare address: a browser goes to the dashboard, anything else gets where to go."""

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def test_a_browser_opening_the_bare_address_is_sent_to_the_dashboard(client):
    response = client.get("/", headers={"Accept": BROWSER_ACCEPT})
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/ui/")
    # ...which answers as a page (the sign-in page), not the API's JSON 401.
    followed = client.get("/", headers={"Accept": BROWSER_ACCEPT}, follow_redirects=True)
    assert followed.status_code == 200 and followed.mimetype == "text/html"


def test_a_client_without_a_key_gets_the_links_not_a_401(client):
    for accept in ("*/*", "application/json", None):
        response = client.get("/", headers={"Accept": accept} if accept else {})
        assert response.status_code == 200
        assert response.json["links"]["dashboard"] == "/ui/"
        assert client.get(response.json["links"]["health"]).status_code == 200


def test_the_front_door_opens_nothing_else(client):
    assert client.post("/text-vectorisation", json={"text": "x"}).status_code == 401
    # Only GET / is public: another method there is the API's, and needs a key like the rest.
    assert client.post("/", json={}).status_code == 401
