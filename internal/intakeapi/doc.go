// Package intakeapi is the HTTP intake API: how ERP export jobs that are not Go programs
// (.NET, Java, ABAP, SQL jobs on other machines) hand keys to erpresync and watch their
// runs. cmd/worker mounts it on its listener under /v1/ when INTAKE_TOKENS is set.
//
// It is a thin layer over package intake and the run ledger, so its validation, exact
// duplicate check, idempotent runs and answers are the CLI's:
//
//	PUT  /v1/runs/{run}/keys   a run's keys as a streamed body (intake.Producer.Submit);
//	                           answers intake.Summary, the JSON of `enqueue --json`
//	POST /v1/keys              trickle keys (intake.Producer.AddKey); answers intake.Trickled
//	GET  /v1/runs              recent runs, []runreport.RunReport (`enqueue runs --json`)
//	GET  /v1/runs/{run}        runreport.RunReport (`enqueue status --json`)
//	GET  /v1/runs/{run}/dead   []tasks.DeadLetter (`enqueue dead list --json`)
//	GET  /v1/openapi.json      the OpenAPI 3 document of all of this (no token needed)
//
// These serve the implicit tenant, the one of the worker's SUPEROFFICE_* settings. Each
// tenant of Config.Tenants has the same routes under /v1/tenants/{tenant}/ (PUT
// /v1/tenants/Cust1/runs/{run}/keys, GET /v1/tenants/Cust1/runs, ...), served by a producer
// and a ledger view of its own (intake.ProducerConfig.Tenant, ledger.Ledger.Tenant): its run
// names, batches, trickle groups and dead letters are its own, so two tenants may both PUT
// a run called "nightly", and neither ever sees the other's.
//
// # Bodies
//
// A PUT body is text/plain (one key a line), text/csv (csv_column=NAME|INDEX, csv_header,
// csv_delimiter) or application/x-ndjson (one {"key": "..."} object a line, read strictly:
// see decodeObject). It is streamed to a temporary file while it arrives (memory stays
// flat whatever its size) and only then read and enqueued, so a request cut off mid-body
// enqueues nothing, and sending it again completes the run. Every read of a body must
// bring a byte within Config.BodyTimeout (else 408). Once the body is whole it waits at
// most Config.SlotWait for one of Config.MaxSubmissions slots (else 503 with Retry-After)
// and is submitted on a context of its own, so a client that hangs up then still gets its
// run completed; a submission that fails part way leaves its run incomplete in the ledger
// (ledger.RunIncomplete), never done. Bodies over Config.MaxBody are refused with 413, and a
// body without a valid key with 400 (API.answer maps every error to its status).
//
// Unlike the CLI, a PUT is strict by default: one invalid key refuses the whole body
// (400, naming every bad line up to intake.MaxReported) and nothing is enqueued, because
// an HTTP client reads the status first and a 200 that skipped keys is easily missed.
// strict=false gives the CLI's default: invalid keys are skipped and listed in the
// summary's problems.
//
// # Authentication
//
// Every route but the OpenAPI document needs "Authorization: Bearer TOKEN". A token speaks
// for one tenant: Config.Tokens (INTAKE_TOKENS) for the implicit tenant's routes, a
// Tenant's Tokens for its routes under /v1/tenants/{tenant}/. No token, or one the API does
// not know, is answered 401; a known token on another tenant's routes (or a tenant's token
// on the implicit tenant's) 403, in words that are the same whether the tenant asked for
// exists or not. SetTenants replaces the tenants while the API serves (the tenants file
// re-read on SIGHUP): a tenant removed is refused from the next request on. Tokens are
// compared as SHA-256 digests in constant time, all of them every time, and never logged. The API speaks plain HTTP: TLS is the job of the proxy in
// front of the worker.
package intakeapi
