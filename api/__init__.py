"""The HTTP API's views: the task routes generated from the specs, and the routes
of models, versions, datasets, training jobs, predictions, prediction URLs,
keys, limits and usage. Each reads the request, calls the domain services (or
runs a task) and shapes the answer; the app factory (app/) registers them."""
