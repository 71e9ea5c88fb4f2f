"""What every tab shares: event options. `PRIVATE` keeps an event off the API page, so the API
page lists only what programs may rely on (assistant/web/api.py). It is a listing choice, not
access control."""

PRIVATE = {"api_visibility": "private"}
