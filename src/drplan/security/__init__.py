"""Security: the audit trail of every change made through the web server and the API
(key rotation, the last clean point and evidence are to come here too)."""
