"""The SQLite state store, one module per concern; ``connector.state.store.StateStore``
composes them."""
