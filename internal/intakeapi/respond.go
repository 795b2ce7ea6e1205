package intakeapi

import (
	"encoding/json"
	"net/http"

	"github.com/erpresync/erpresync/intake"
)

// apiError is the JSON body of every 4xx and 5xx answer (schema Error in openapi.json).
type apiError struct {
	// Message says what is wrong and what would be valid.
	Message string `json:"error"`
	// Line is the 1-based line of the body at fault, when one is.
	Line int `json:"line,omitempty"`
	// Field names the query parameter or JSON field at fault, e.g. "erp_connection" or
	// "keys[2]".
	Field string `json:"field,omitempty"`
	// Reason is what is wrong with that line or field alone, e.g. "longer than 254
	// characters (300)".
	Reason string `json:"reason,omitempty"`
	// Problems lists the invalid keys of a body refused in strict mode (the first
	// intake.MaxReported, in input order).
	Problems []*intake.KeyError `json:"problems,omitempty"`
	// Summary is how far a submission got when it failed after it began: read and valid
	// counts, batches already enqueued.
	Summary *intake.Summary `json:"summary,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, e *apiError) { writeJSON(w, code, e) }
