// Package export writes what erpresync recorded for other systems to read: a run's change
// items and dead letters as RFC 4180 CSV (its cells guarded against spreadsheet formulas) or
// as JSON lines. `enqueue changes`, `enqueue dead export` and the runs page's downloads all
// write through it, and intake reads such a CSV cell back (ParseCSVCell).
package export
