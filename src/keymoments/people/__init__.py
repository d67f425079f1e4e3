"""People: identity stitching of identifiers into persons."""
