"""Free text in many languages: language, sentiment, themes, redaction and language service quality."""
