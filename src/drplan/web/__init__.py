"""The web server: the REST API v1, the recovery dashboard and the public status page,
behind real authentication (docs/web.md). ``app.build`` makes the application,
``server.WebServer`` runs it; what each request may do is ``auth``'s, the accounts behind
it ``accounts``'."""
