"""The Celery worker: the app, its thin tasks and the beat schedule."""
