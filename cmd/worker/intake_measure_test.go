package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/erpresync/erpresync/internal/redistest"
)

// TestIntakeMillionKeys measures the HTTP intake API against the CLI in the same run, on a
// private redis-server: a body of 1,000,000 keys (plus 10,000 duplicates) PUT to a worker
// process as text/plain and as NDJSON, and the same file given to `enqueue --file`. It
// reports the wall time, keys/s, CPU time and peak RSS of each (the worker's peak is taken during
// the request alone: /proc/PID/clear_refs resets it first), medians of
// ERPRESYNC_INTAKE_RUNS runs (default 3), and the worker's peak for a body of 100,000 keys,
// to show that memory does not grow with the body. The worker serves another queue, so
// it only takes the keys in. Opt-in, as it takes about a minute:
//
//	ERPRESYNC_INTAKE_MEASURE=1 go test ./cmd/worker -run TestIntakeMillionKeys -v -count=1
//
// (make bench-intake-http).
func TestIntakeMillionKeys(t *testing.T) {
	if os.Getenv("ERPRESYNC_INTAKE_MEASURE") == "" {
		t.Skip("set ERPRESYNC_INTAKE_MEASURE=1 to measure the intake API with a million keys (make bench-intake-http)")
	}
	runs := 3
	if n, err := strconv.Atoi(os.Getenv("ERPRESYNC_INTAKE_RUNS")); err == nil && n > 0 {
		runs = n
	}
	db := redistest.New(t)
	if !db.Server.Real {
		t.Skip("needs a real redis-server")
	}
	sim := startSim(t)
	dir := t.TempDir()
	enqueueBin := enqueueBinary(t)
	files := map[int]string{}
	for _, n := range []int{100_000, 1_000_000} {
		files[n] = writeKeys(t, dir, n, false)
	}
	ndjson := writeKeys(t, dir, 1_000_000, true)

	addr := freeAddr(t)
	const tok = "measure-intake-token-0123456789"
	env := workerEnv(db, sim)
	env["WORKER_HTTP_ADDR"], env["INTAKE_TOKENS"], env["INTAKE_QUEUE"], env["WORKER_QUEUES"] = addr, tok, "intake-measure", "erpresync"
	env["LOG_LEVEL"] = "warn"
	w := startWorker(t, env)
	base := "http://" + addr
	waitFor(t, 30*time.Second, func() (bool, string) {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == 200, resp.Status
	})
	pid := w.cmd.Process.Pid

	type result struct {
		secs    float64 // wall time
		cpuSecs float64 // user + system time of the process taking the keys in
		rssKB   int64
	}
	put := func(run, path, ctype, query string) result {
		t.Helper()
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		fi, _ := f.Stat()
		if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
			t.Fatalf("reset the worker's peak RSS: %v", err)
		}
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodPut, base+"/v1/runs/"+run+"/keys?erp_connection=1&actor_type=Customer"+query, bufio.NewReaderSize(f, 64<<10))
		req.ContentLength = fi.Size()
		req.Header.Set("Content-Type", ctype)
		req.Header.Set("Authorization", "Bearer "+tok)
		cpu0 := cpuSeconds(t, pid)
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var sum struct {
			Keys       int64 `json:"keys"`
			Duplicates int64 `json:"duplicates"`
		}
		err = json.NewDecoder(resp.Body).Decode(&sum)
		resp.Body.Close()
		secs := time.Since(start).Seconds()
		if resp.StatusCode != 200 || err != nil || sum.Keys == 0 {
			t.Fatalf("PUT %s: %d %v %+v\n%s", run, resp.StatusCode, err, sum, w.log())
		}
		return result{secs, cpuSeconds(t, pid) - cpu0, vmHWM(t, pid)}
	}
	cli := func(run, path string) result {
		t.Helper()
		cmd := exec.Command(enqueueBin, "--redis-url", db.URL(), "--queue", "intake-measure", "--erp-connection", "1",
			"--actor-type", "Customer", "--file", path, "--run", run)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		start := time.Now()
		if err := cmd.Run(); err != nil {
			t.Fatalf("enqueue: %v\n%s", err, stderr.String())
		}
		ps := cmd.ProcessState
		return result{time.Since(start).Seconds(), (ps.UserTime() + ps.SystemTime()).Seconds(), ps.SysUsage().(*syscall.Rusage).Maxrss}
	}

	idle := vmRSS(t, pid)
	variants := []struct {
		name string
		do   func(i int) result
	}{
		{"enqueue --file (CLI)", func(i int) result { return cli(fmt.Sprintf("cli-%d", i), files[1_000_000]) }},
		{"PUT text/plain (strict, the API's default)", func(i int) result {
			return put(fmt.Sprintf("plain-%d", i), files[1_000_000], "text/plain", "")
		}},
		{"PUT text/plain strict=false (as the CLI)", func(i int) result {
			return put(fmt.Sprintf("lax-%d", i), files[1_000_000], "text/plain", "&strict=false")
		}},
		{"PUT application/x-ndjson", func(i int) result {
			return put(fmt.Sprintf("ndjson-%d", i), ndjson, "application/x-ndjson", "")
		}},
		{"PUT text/plain, 100,000 keys", func(i int) result {
			return put(fmt.Sprintf("small-%d", i), files[100_000], "text/plain", "")
		}},
	}
	got := make([][]result, len(variants))
	for i := range runs { // interleaved, so that a slow moment of the machine hits all alike
		for v, vt := range variants {
			got[v] = append(got[v], vt.do(i))
		}
	}
	var report strings.Builder
	fmt.Fprintf(&report, "intake of 1,000,000 keys (+10,000 duplicates), medians of %d runs; worker idle RSS %.1f MB\n", runs, float64(idle)/1024)
	for v, vt := range variants {
		secs := median(got[v], func(r result) float64 { return r.secs })
		rss := median(got[v], func(r result) float64 { return float64(r.rssKB) })
		cpu := median(got[v], func(r result) float64 { return r.cpuSecs })
		keys := 1_000_000.0
		if strings.Contains(vt.name, "100,000") {
			keys = 100_000
		}
		who := "worker"
		if strings.HasPrefix(vt.name, "enqueue") {
			who = "enqueue"
		}
		fmt.Fprintf(&report, "  %-45s %6.2f s  %9.0f keys/s  CPU %5.2f s  peak RSS %6.1f MB (%s)\n", vt.name, secs, keys/secs, cpu, rss/1024, who)
	}
	t.Log("\n" + report.String())
	if out := os.Getenv("ERPRESYNC_INTAKE_REPORT"); out != "" {
		os.WriteFile(out, []byte(report.String()), 0o644)
	}
}

// writeKeys writes n distinct keys with a duplicate after every hundredth, one a line, or
// as NDJSON objects.
func writeKeys(t *testing.T, dir string, n int, ndjson bool) string {
	t.Helper()
	name := filepath.Join(dir, fmt.Sprintf("keys-%d.txt", n))
	if ndjson {
		name = filepath.Join(dir, fmt.Sprintf("keys-%d.ndjson", n))
	}
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	line := func(i int) {
		if ndjson {
			fmt.Fprintf(w, "{\"key\": \"ERP%07d\"}\n", i)
		} else {
			fmt.Fprintf(w, "ERP%07d\n", i)
		}
	}
	for i := range n {
		line(i)
		if i%100 == 99 {
			line(i - 50)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return name
}

func procStatus(t *testing.T, pid int, field string) int64 {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

func vmHWM(t *testing.T, pid int) int64 { return procStatus(t, pid, "VmHWM") }

// cpuSeconds is the user + system time pid has used (/proc/PID/stat, in clock ticks of
// USER_HZ, 1/100 s on Linux).
func cpuSeconds(t *testing.T, pid int) float64 {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The command name, in parentheses, may hold spaces: count fields after it.
	f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100
}
func vmRSS(t *testing.T, pid int) int64 { return procStatus(t, pid, "VmRSS") }

func median[T any](xs []T, f func(T) float64) float64 {
	v := make([]float64, len(xs))
	for i, x := range xs {
		v[i] = f(x)
	}
	slices.Sort(v)
	return v[len(v)/2]
}
