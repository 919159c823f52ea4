"""The web service: the browser UI and the HTTP/JSON API, as the signed-in person."""
