# erpresync development targets. `make help` lists them.
GO ?= go

.PHONY: help test test-race ci bench bench-pipeline bench-intake fuzz soak demo lint tidy compose-check build

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

test: ## the README's test command
	$(GO) test ./...

test-race: ## the tests with the race detector, as CI runs them
	$(GO) test -race ./...

ci: ## what CI runs
	bash .ci/run

build: ## build worker, enqueue and netserver-sim into ./bin
	$(GO) build -o bin/ ./cmd/...

bench: ## SOAP and REST encode/decode (REST against encoding/json) and ledger benchmarks, 5 runs each (compare with benchstat)
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./soap ./rest ./tasks ./intake

bench-pipeline: ## whole pipeline (enqueue, worker, simulator, ledger) in keys/s, 5 runs
	$(GO) test ./cmd/worker -run '^$$' -bench Pipeline -benchtime 3x -count 5

bench-intake: ## enqueue a million-key file 5 times with the real command; median time and peak RSS
	bash intake/measure.sh 5

fuzz: ## fuzz the SOAP and REST response parsers and the login parser, 2 minutes each
	$(GO) test ./soap -run '^$$' -fuzz FuzzParseResponse -fuzztime 2m
	$(GO) test ./rest -run '^$$' -fuzz FuzzDecodeResponse -fuzztime 2m
	$(GO) test ./auth -run '^$$' -fuzz FuzzLoginReply -fuzztime 2m

soak: ## 100,000 keys through two workers with 5% random faults, poison keys and ticket expiries (ERPRESYNC_SOAK_KEYS to change, ERPRESYNC_SOAK_API=rest for REST)
	ERPRESYNC_SOAK=1 $(GO) test -count=1 -timeout 40m -run 'TestSoak' -v ./cmd/worker

demo: ## the whole pipeline on embedded defaults
	$(GO) run ./cmd/worker demo

lint: ## gofmt and go vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...

compose-check: ## validate docker-compose.yml (needs the docker-compose package)
	SUPEROFFICE_URL=https://sod.superoffice.com/Cust12345 docker-compose config -q
	SUPEROFFICE_URL=https://sod.superoffice.com/Cust12345 docker-compose --profile simulator --profile prometheus config -q

tidy: ## go mod tidy
	$(GO) mod tidy
