"""The project's test services and fixtures (DynamoDB Local, moto, fresh resources from
template.yaml) for every test in the repository, the examples' included."""

pytest_plugins = ["tests.support.fixtures"]
