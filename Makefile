# erpresync development targets. `make help` lists them.
GO ?= go

.PHONY: help test test-race ci bench bench-codec bench-e2e bench-pipeline bench-flow bench-intake bench-intake-http bench-footprint bench-lanes bench-tenants fuzz soak chaos demo lint tidy compose-check build

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

test: ## the README's test command
	$(GO) test ./...

test-race: ## the tests with the race detector, as CI runs them
	$(GO) test -race ./...

ci: ## what CI runs
	bash .ci/run

build: ## build worker, enqueue and netserver-sim into ./bin
	$(GO) build -o bin/ ./cmd/...

bench: bench-codec bench-e2e bench-intake bench-intake-http bench-flow bench-footprint bench-lanes bench-tenants ## every benchmark BENCHMARKS.md reports (about an hour)

bench-codec: ## SOAP and REST codecs (against encoding/xml and encoding/json), ledger, intake and runs-page export benchmarks, 5 runs each (compare with benchstat)
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./soap ./rest ./tasks ./internal/ledger ./intake ./internal/runspage

bench-e2e: ## worker processes end to end against the naive baseline, and latency-bound throughput, 5 runs each
	$(GO) test ./bench -run '^$$' -bench 'EndToEnd|LatencyBound' -benchtime 1x -count 5 -timeout 90m

bench-pipeline: ## whole pipeline (enqueue, worker, simulator, ledger) in keys/s, 5 runs
	$(GO) test ./cmd/worker -run '^$$' -bench Pipeline -benchtime 3x -count 5

bench-flow: ## flow control: 3 worker processes at 20 requests/s, 50 ms calls; achieved rate, 10-s peak, trickle latency behind 300 bulk batches; requests reaching the tenant in a 30-s outage
	$(GO) test ./cmd/worker -run '^$$' -bench Flow -benchtime 1x -count 1 -v -timeout 10m

bench-intake: ## enqueue a million-key file 5 times with the real command; median time and peak RSS
	bash intake/measure.sh 5

bench-intake-http: ## a million keys PUT to the intake API vs `enqueue --file` in the same run: time, keys/s, peak RSS (3 runs)
	ERPRESYNC_INTAKE_MEASURE=1 $(GO) test ./cmd/worker -run TestIntakeMillionKeys -count=1 -timeout 30m -v

bench-footprint: ## Redis memory a finished 1,000,000-key run leaves (INFO used_memory before and after), bytes per key
	$(GO) test ./cmd/worker -run '^$$' -bench Footprint -benchtime 1x -timeout 30m

bench-lanes: ## per-tenant lanes: a small tenant behind a backlog, a limited and an unlimited tenant sharing 12 slots, idle cost of 1,000 tenants; medians of 5
	$(GO) test ./internal/lanes -run '^$$' -bench Fairness -benchtime 5x -timeout 20m

bench-tenants: ## tenants through worker processes: a small tenant behind a backlog (lanes, none), a limited and an unlimited tenant on 12 slots, 200 x 500 keys vs 1 x 100,000 (medians of 5); 1,000 idle tenants (medians of 3)
	$(GO) test ./bench -run '^$$' -bench 'Tenants(Backlog|RateShare|ManySmall)' -benchtime 5x -timeout 60m
	$(GO) test ./bench -run '^$$' -bench TenantsIdle -benchtime 3x -timeout 60m

fuzz: ## fuzz the SOAP and REST response parsers and the login parser, 2 minutes each (FUZZTIME to change)
	$(GO) test ./soap -run '^$$' -fuzz FuzzParseResponse -fuzztime $(or $(FUZZTIME),2m)
	$(GO) test ./rest -run '^$$' -fuzz FuzzDecodeResponse -fuzztime $(or $(FUZZTIME),2m)
	$(GO) test ./auth -run '^$$' -fuzz FuzzLoginReply -fuzztime $(or $(FUZZTIME),2m)

soak: ## 100,000 keys through two workers with 5% random faults, poison keys and ticket expiries (ERPRESYNC_SOAK_KEYS to change, ERPRESYNC_SOAK_API=rest for REST)
	ERPRESYNC_SOAK=1 $(GO) test -count=1 -timeout 40m -run 'TestSoak' -v ./cmd/worker

chaos: ## the chaos suite in its full form: longer runs, more kills (the short form runs in go test ./...)
	ERPRESYNC_CHAOS=full $(GO) test -count=1 -timeout 60m -v ./chaos

demo: ## the whole pipeline on embedded defaults
	$(GO) run ./cmd/worker demo

lint: ## gofmt and go vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...

compose-check: ## validate docker-compose.yml for every profile and the alert rules (needs docker-compose and promtool)
	SUPEROFFICE_URL=https://sod.superoffice.com/Cust12345 docker-compose config -q
	for p in tools simulator prometheus; do SUPEROFFICE_URL=https://sod.superoffice.com/Cust12345 docker-compose --profile $$p config -q || exit 1; done
	promtool check rules deploy/alerts.yml
	cd deploy && promtool test rules alerts_test.yml

tidy: ## go mod tidy
	$(GO) mod tidy

# The README's trial on one machine: a Redis of its own on loopback, the simulator and a
# worker, in the background; `make trial-stop` ends them. Logs and process ids in TRIAL_DIR.
.PHONY: trial trial-stop
TRIAL_DIR ?= .trial
TRIAL_REDIS_PORT ?= 6391
TRIAL_SIM_ADDR ?= 127.0.0.1:8081
# The intake API's token for trials only (the README's curl examples send it); never a real worker's.
TRIAL_INTAKE_TOKEN = trial-intake-token-0123456789
TRIAL_HTTP_ADDR = $(if $(WORKER_HTTP_ADDR),$(WORKER_HTTP_ADDR),127.0.0.1:8080)

trial: build ## start Redis (127.0.0.1:6391), the simulator and a worker (intake API on, trial token) for a trial (WORKER_HTTP_ADDR=host:port moves the worker)
	@mkdir -p $(TRIAL_DIR)
	@if [ -f $(TRIAL_DIR)/worker.pid ]; then echo "a trial is running (make trial-stop ends it)"; exit 1; fi
	redis-server --bind 127.0.0.1 --port $(TRIAL_REDIS_PORT) --save '' --appendonly no --daemonize yes \
	  --dir $(abspath $(TRIAL_DIR)) --pidfile $(abspath $(TRIAL_DIR))/redis.pid --logfile $(abspath $(TRIAL_DIR))/redis.log
	bin/netserver-sim -addr $(TRIAL_SIM_ADDR) -poison CUST-13 >$(TRIAL_DIR)/sim.log 2>&1 & echo $$! >$(TRIAL_DIR)/sim.pid
	env -u SUPEROFFICE_TICKET -u SUPEROFFICE_SYSTEM_TOKEN -u SUPEROFFICE_APP_TOKEN \
	  REDIS_URL=redis://127.0.0.1:$(TRIAL_REDIS_PORT)/0 REDIS_CLUSTER_ADDRS= SUPEROFFICE_URL=http://$(TRIAL_SIM_ADDR)/Cust12345 \
	  SUPEROFFICE_USERNAME=ERPSYNC SUPEROFFICE_PASSWORD=erpsync WORKER_BUSINESS_RETRY_DELAY=2s WORKER_HTTP_ADDR=$(TRIAL_HTTP_ADDR) \
	  INTAKE_TOKENS=$(TRIAL_INTAKE_TOKEN) bin/worker >$(TRIAL_DIR)/worker.log 2>&1 & echo $$! >$(TRIAL_DIR)/worker.pid
	@sleep 1; for p in sim worker; do kill -0 $$(cat $(TRIAL_DIR)/$$p.pid) 2>/dev/null || { echo "$$p did not start:"; cat $(TRIAL_DIR)/$$p.log; $(MAKE) --no-print-directory trial-stop; exit 1; }; done
	@echo "trial running: dashboard http://$(TRIAL_HTTP_ADDR)/monitoring/, logs in $(TRIAL_DIR)/"
	@echo "  export REDIS_URL=redis://127.0.0.1:$(TRIAL_REDIS_PORT)/0   # for bin/enqueue"
	@echo "  export INTAKE_TOKENS=$(TRIAL_INTAKE_TOKEN)   # for curl to the intake API at http://$(TRIAL_HTTP_ADDR)/v1/"
	@echo "  make trial-stop                          # stops the worker, the simulator and Redis"

trial-stop: ## stop what `make trial` started (the worker first, so that it hands its tasks back to Redis)
	@for p in worker sim redis; do \
	  f=$(TRIAL_DIR)/$$p.pid; [ -f $$f ] || continue; pid=$$(cat $$f); \
	  if kill $$pid 2>/dev/null; then \
	    i=0; while kill -0 $$pid 2>/dev/null && [ $$i -lt 400 ]; do sleep 0.1; i=$$((i+1)); done; echo "stopped $$p"; \
	  fi; rm -f $$f; \
	done
