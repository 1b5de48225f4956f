"""The domain layer: the rules of documents, updates, adapters, skills, teachers and tenants,
as functions of a session (no HTTP). Routes parse a request, call one of these and present its
result; the request's session dependency is the one commit point, and what must wait for the
commit (tasks to send, folders to delete) is registered with :mod:`service.store.hooks`."""
