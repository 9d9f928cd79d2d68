"""What every layer shares and that needs no web framework: the error family the
HTTP layers map to responses (as KServe keeps its errors free of its server), and
the id of the request being served, for log lines below the web layer."""
