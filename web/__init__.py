"""The web layer's foundations: what every Flask view of the service shares
(blueprint class, the API-key check, error handlers, the request's database
session, metrics, admission and rate limits). Below it, nothing imports Flask."""
