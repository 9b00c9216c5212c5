"""``driftloop loop``: run the loop's workers together, each a supervised child process (docs/loop.md)."""
