"""The web portal: server-rendered pages for customers, served by the collector over HTTPS.

Modules: ``passwords`` (scrypt hashes, ``user passwd``), ``signin`` (sign-in, lockout,
browser sessions, CSRF tokens), ``i18n`` (zh-CN / English catalogues, language choice),
``views`` (what a page shows, gathered through the collector's services), ``pages``
(the aiohttp handlers and the one place errors become HTTP status), ``server`` (HTTPS
beside the gRPC server in the same asyncio loop). Every action goes through the same
services as the gRPC API, with the signed-in user's ``Principal``: the same tenancy
rules and the same audit entries. docs/portal.md.
"""
