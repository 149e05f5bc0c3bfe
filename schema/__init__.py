"""The GraphQL layer: the schema, the Starlette app, and the composition root that wires the hub."""
