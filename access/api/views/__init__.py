"""The API's routes, one module per feature; each view checks permission and calls a service."""
