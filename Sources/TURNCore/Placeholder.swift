// Placeholder; filled in by the TURN issue.
