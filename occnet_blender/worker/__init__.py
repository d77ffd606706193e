"""The link to the backend worker: the process and its client, its lifecycle, the job queue, the request fields
and the Install Backend button."""
