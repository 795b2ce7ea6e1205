package runspage

import (
	"mime"
	"net/http"
	"strings"

	"github.com/erpresync/erpresync/internal/export"
)

// serveChanges streams a run's change items as CSV (?format=csv, the default) or NDJSON
// (?format=jsonl), in the format and order of `enqueue changes`, reading the ledger page
// by page: memory stays flat however many items the run has.
func (h *Handler) serveChanges(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("format")
	if name == "" {
		name = string(export.CSV)
	}
	f, err := export.ParseFormat(name)
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, "format="+err.Error())
		return
	}
	st, tenant, ok := h.status(w, r)
	if !ok {
		return
	}
	ext := map[export.Format]string{export.CSV: ".csv", export.JSONL: ".ndjson"}[f]
	// Run names hold letters, digits and "-_.:"; ':' is no good in a file name.
	file := strings.ReplaceAll(st.Run, ":", "_") + "-changes" + ext
	if tenant != "" {
		file = tenant + "-" + file
	}
	w.Header().Set("Content-Type", f.ContentType())
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": file}))
	if r.Method == http.MethodHead {
		return
	}
	cw := &countingWriter{w: w}
	out := export.NewChangeWriter(cw, f)
	err = h.cfg.TenantLedger(tenant).Changes(r.Context(), st.Run, out.Write)
	if err == nil {
		err = out.Flush()
	}
	if err == nil {
		return
	}
	if cw.n == 0 {
		w.Header().Del("Content-Disposition")
		h.fail(w, r, http.StatusInternalServerError, "reading the changes: "+err.Error())
		return
	}
	// Part of the file is out: cut the connection, so the download fails instead of
	// looking complete.
	panic(http.ErrAbortHandler)
}

// countingWriter tells whether anything reached the client.
type countingWriter struct {
	w http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
