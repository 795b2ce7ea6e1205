package intakeapi_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/erpresync/erpresync/internal/intakeapi"
)

// An ERP job PUTs a run's keys; the same request again enqueues nothing twice. (miniredis
// stands in for Redis so that the example runs anywhere; the tests use a real
// redis-server.) cmd/worker mounts the API at intakeapi.Prefix on its listener.
func ExampleAPI() {
	mr, err := miniredis.Run()
	if err != nil {
		panic(err)
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()

	api, err := intakeapi.New(intakeapi.Config{Redis: rdb, Tokens: []string{"erp-export-4f1c9a0b2d7e8c35"}})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle(intakeapi.Prefix, api)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	put := func(tok, body string) {
		req, _ := http.NewRequest(http.MethodPut, srv.URL+"/v1/runs/customers-2026-11-27/keys?erp_connection=3&actor_type=Customer", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/x-ndjson")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			panic(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var line []string
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, `"keys"`) || strings.Contains(l, `"batches_`) || strings.Contains(l, `"error"`) {
				line = append(line, strings.TrimSpace(l))
			}
		}
		fmt.Println(resp.StatusCode, strings.Join(line, " "))
	}
	body := "{\"key\": \"10001\"}\n{\"key\": \"10002\"}\n{\"key\": \"10001\"}\n"
	put("erp-export-4f1c9a0b2d7e8c35", body)
	put("erp-export-4f1c9a0b2d7e8c35", body)
	put("a-guess-at-the-token", body)
	// Output:
	// 200 "keys": 2, "batches_enqueued": 1, "batches_present": 0,
	// 200 "keys": 2, "batches_enqueued": 0, "batches_present": 1,
	// 401 "error": "wrong token: it is not one of INTAKE_TOKENS nor a tenant's"
}
