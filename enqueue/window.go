package enqueue

import (
	"fmt"
	"time"
)

// MinCompletionWindow is the shortest completion window a batch accepts.
const MinCompletionWindow = time.Minute

// ParseCompletionWindow reads a batch's completion window: a Go duration
// of at least MinCompletionWindow, such as "24h" (OpenAI's only value) or
// "90m". Every surface that takes one (CLI, HTTP, the OpenAI-compatible
// route) reads it here.
func ParseCompletionWindow(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d < MinCompletionWindow {
		return 0, fmt.Errorf("completion window %q must be a duration of at least %s, such as 24h", clip(s), MinCompletionWindow)
	}
	return d, nil
}

// ParseDeadline reads a single job's deadline, counted from its submit: a
// positive Go duration, such as "30s" or "5m".
func ParseDeadline(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("deadline %q must be a positive duration, such as 30s or 5m", clip(s))
	}
	return d, nil
}

// clip shortens what a user gave for an error message.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
