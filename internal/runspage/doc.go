// Package runspage is the operators' read-only view of runs, served by the worker at
// /runs/ next to the asynqmon dashboard and behind the same basic auth. asynqmon shows
// tasks; this page shows what an operator asks about: the recent runs with their state,
// progress, rate, ETA, dead letters and the CRM records changed by table, one run's dead
// letters with their reasons (paged), and its changes as a CSV or NDJSON download.
//
// Pages are rendered on the server from html/template files embedded in the binary:
// no build step, no JavaScript, no assets from elsewhere. The numbers come from the run
// ledger (package internal/ledger) and are derived by package internal/runreport, as `enqueue status`
// derives them, so both always agree.
//
// With tenants (Config.Tenants), the list shows every tenant's runs, each with its tenant,
// and filters by ?tenant=ID; a run's page and export take ?tenant=ID too (absent: the
// implicit tenant, so the URLs of before tenants keep working). Each tenant's runs are read
// through its own view of the ledger (Config.TenantLedger), so two tenants' runs of the
// same name never mix.
//
// Flow control reports pauses (SuperOffice unavailable, calls held) through the Pauser
// interface; each page shows them as a banner at the top.
package runspage
