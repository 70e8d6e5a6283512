# mimoq — see README.md. Every target works from a clean clone.
GO      ?= go
BIN     ?= bin/mimoq
PKGS    ?= ./...

.PHONY: all build test test-short bench lint demo clean fuzz soak

all: lint test

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) ./cmd/mimoq

test:
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 15m $(PKGS)

test-short:
	$(GO) test -short -count=1 $(PKGS)

# System benchmarks (mimoq vs its asynq baseline, one run each) write
# docs/benchmarks.md; the package micro-benchmarks print ns/op.
bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x -count 1 -timeout 30m ./internal/bench/ -args -report $(CURDIR)/docs/benchmarks.md
	$(GO) test -run '^$$' -bench . -benchtime 2s -count 1 -timeout 30m ./apiclient/ ./internal/dlq/ ./internal/lane/

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

# Run each fuzz target for FUZZTIME (seeds alone run in `make test`).
FUZZTIME ?= 60s
fuzz:
	@for pkg in $$($(GO) list $(PKGS)); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; \
	done

# The fault tests of `make test` (chaos, bad input, security), bigger and
# longer: 10,000-job batches, a longer Redis outage, more network faults;
# and the lifecycle's model-based test with 40 seeds of 5,000 steps.
soak:
	MIMOQ_SOAK=1 $(GO) test -race -count=1 -timeout 60m -v -run 'TestLifecycleModel' ./internal/records/
	MIMOQ_SOAK=1 $(GO) test -race -count=1 -timeout 90m -v -run 'TestChaos|TestBadInput|TestSecurity|TestSIG' ./internal/e2e/

demo: build
	./scripts/demo.sh

clean:
	rm -rf bin
