"""The embedded store: the workspace, its tables and migrations."""
