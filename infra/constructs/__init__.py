"""One construct per function kind, plus the pieces they share (function, secrets, schedules, dashboard)."""
