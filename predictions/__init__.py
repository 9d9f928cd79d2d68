"""Predictions made outside the task endpoints' own request: private prediction URLs
(OneClick's model URL, answered without an API key). Both run the task endpoint
itself, for the URL's account (dispatch.py), so a prediction behaves exactly as
the same call with that account's key."""
