"""Publishing: from a repository at a commit to what should run, and back to URL.md. Pure."""
