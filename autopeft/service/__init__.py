"""The service's front door: searches launched, stopped and resumed as Ray jobs, from the dashboard or over HTTP.

- ``admission``: a submitted spec (text, never code) checked with the command line's own errors and confined to the
  service's folders and database before anything starts.
- ``jobs``: the actions (launch, stop, resume, baselines, confirm, status) on Ray's job API; each job runs the
  command line, so a search launched here behaves as one launched from a shell.
- ``cluster``: a private local Ray head with its job server, when no cluster is named.
- ``http``: the HTTP API over ``jobs`` (Starlette), served by ``autopeft serve``.
"""
