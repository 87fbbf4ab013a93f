"""Development tools: a throwaway private slapd and the demo. Not used by the service."""
