"""The API routers, one module per resource, and the dependencies they share."""
