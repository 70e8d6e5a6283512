// Package bench holds mimoq's benchmarks: each measures mimoq against the
// asynq baseline it builds on, on the same Redis in the same run, and `make
// bench` writes the figures to docs/benchmarks.md. There is no code here
// besides the benchmarks themselves (bench_test.go).
package bench
