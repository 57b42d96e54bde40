"""Message search: the query language (query), the index the job keeps (index), who may
see what (scope) and running a search (run)."""
