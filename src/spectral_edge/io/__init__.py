"""Input and output: checkpoint readers and table writers."""
