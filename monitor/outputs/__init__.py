"""What the monitor makes of its results: the in-memory timeline, events, the CSV and events
files, webhook posts, and the one function that names a source's files."""
