// Package apiclient calls the MiMo chat-completions API (or any OpenAI-compatible
// one) and says, for every failure, whether it is worth retrying.
//
// It knows nothing of queues. [Client.Do] makes exactly one attempt and never
// retries: the caller owns retries, backoff and rate limits. [Client.ListModels]
// reads the live catalogue (GET /models) the same way; [DefaultModels] is the
// catalogue of today's MiMo text models for when there is none. Every failure is a
// typed error read with errors.As — [*ValidationError] (caught before sending),
// [*APIError] (any non-2xx status), [*MalformedResponseError] and
// [*ResponseTooLargeError] (a 2xx that cannot be used) and [*TransportError]
// (no response) — and [Classify] maps any of them to retryable, terminal or "not a
// failure" (the caller's own cancellation), following the failure table of the
// mimoq contract. The API key never appears in an error string.
//
// A [Request] keeps every field the user wrote. One read with [ParseRequest] is
// sent byte for byte as read until its typed fields are changed, and even then
// the fields this package does not model (thinking, tools, audio,
// response_format, …) pass through verbatim.
package apiclient
