"""The HTTP API (FastAPI): what pipelines and other tools call, with personal tokens and the same
services and role checks as the pages. ``create_app`` builds it; the Procfile's ``api`` serves it."""
