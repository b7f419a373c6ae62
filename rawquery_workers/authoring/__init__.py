"""Writing specs: `rq spec preview` (two pages per stream, nothing stored) and the hints it
gives from what the responses show.

May import: spec, http, paginate, auth, transform, sink (schemas only), runner.context.
"""
