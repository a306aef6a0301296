"""The application layer: what every front end (window, CLI, tests) drives. Qt-free."""
